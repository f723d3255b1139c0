"""No key is silently ignored (actlab.config.strict): a key that no schema reads is refused at compose time
with the closest valid name, whatever prefix it came with (`+`, `++` or none), by train.py and the commands
that use a checkpoint; the nodes a schema leaves open (`callbacks`, `robot`, ...) take any key. A config error
or `--help` is answered before torch, Lightning, LeRobot or a simulator is imported (checked with Python's
import-time log, not timed; `python -m bench startup` times it)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from actlab.config.compose import compose_eval
from actlab.config.strict import UnknownKeyError
from tests.conftest import REPO, compose_train

HEAVY = {"torch", "lightning", "lerobot", "robosuite", "mujoco"}

MAX_STEP = "trainer.max_step: no such key; did you mean trainer.max_steps?"
DIM_MODLE = "model.dim_modle: no such key; did you mean model.dim_model?"


@pytest.mark.parametrize(
    "override,message",
    [
        ("+trainer.max_step=3", MAX_STEP),
        ("++trainer.max_step=3", MAX_STEP),
        ("+model.dim_modle=64", DIM_MODLE),
        ("+model.optimizer.lrr=1", "model.optimizer.lrr: no such key; did you mean model.optimizer.lr?"),
        ("+encoder.model_name=x", "encoder.model_name: no such key; did you mean encoder.name? (model_name is a key "
         "of encoder=clip)"),
    ],
)  # fmt: skip
def test_a_key_no_schema_reads_is_refused_with_the_closest_name(tmp_path, override, message):
    with pytest.raises(UnknownKeyError) as refused:
        compose_train([override], tmp_path)
    assert str(refused.value) == message


def test_a_key_unlike_any_also_lists_the_keys_of_its_node(tmp_path):
    with pytest.raises(UnknownKeyError, match=r"^foo: no such key; did you mean \w+\? \(the keys of the config: task_"):
        compose_train(["+foo=1"], tmp_path)


@pytest.mark.parametrize("command", ["eval", "serve", "deploy"])
def test_the_checkpoint_commands_refuse_them_too(tmp_path, command):
    with pytest.raises(UnknownKeyError) as refused:
        compose_eval(["checkpoint=/nonexistent", "+model.dim_modle=64"], tmp_path, command)
    assert str(refused.value) == DIM_MODLE


def test_every_unknown_key_is_named_in_one_line(tmp_path):
    with pytest.raises(UnknownKeyError) as refused:
        compose_train(["+trainer.max_step=3", "+model.dim_modle=64"], tmp_path)
    assert str(refused.value) == f"{DIM_MODLE}; {MAX_STEP}"


def test_open_nodes_take_any_key(tmp_path):
    monitor = "lightning.pytorch.callbacks.LearningRateMonitor"
    cfg = compose_train([f"+callbacks.lr._target_={monitor}", "+callbacks.lr.logging_interval=step"], tmp_path)
    assert cfg.callbacks.lr.logging_interval == "step"
    cfg = compose_eval(["checkpoint=/nonexistent", "+robot.events=/tmp/events.txt"], tmp_path, "deploy")
    assert cfg.robot.events == "/tmp/events.txt"


# ------------------------------------------------------------------------------------ the commands themselves
def command(name: str) -> list[str]:
    if name == "train.py":
        return [sys.executable, str(REPO / "train.py")]
    return [str(Path(sys.executable).parent / name)]


def run_logging_imports(argv: list[str], cwd: Path) -> tuple[int, str, list[str], set[str]]:
    """Exit status, stdout, the lines on stderr other than the import-time log, and the top-level packages
    imported."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    log = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("import time:")]
    return done.returncode, done.stdout, lines, {line.rsplit("|", 1)[1].strip().split(".")[0] for line in log}


@pytest.mark.parametrize(
    "name,args,message",
    [
        ("train.py", ["+trainer.max_step=3"], MAX_STEP),
        ("train.py", ["model.dim_modle=64"], DIM_MODLE),  # Hydra's own error, one line too
        ("train.py", ["model=huge"], "model=huge: no such option; did you mean model=large? (options: baseline, "
         "custom, large, tiny)"),
        ("actlab-eval", ["checkpoint=/nonexistent", "+model.dim_modle=64"], DIM_MODLE),
        ("actlab-deploy", ["control.frequncy=5"], "control.frequncy: no such key; did you mean control.frequency?"),
    ],
)  # fmt: skip
def test_a_config_error_is_one_line_before_any_heavy_import(tmp_path, name, args, message):
    status, _, lines, imported = run_logging_imports([*command(name), *args], tmp_path)
    assert (status, lines) == (2, [f"error: {message}"])
    assert not imported & HEAVY
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("name", ["train.py", "actlab-eval", "actlab-serve", "actlab-deploy"])
def test_help_answers_before_any_heavy_import(tmp_path, name):
    status, stdout, _, imported = run_logging_imports([*command(name), "--help"], tmp_path)
    assert status == 0 and "== Configuration groups ==" in stdout
    assert not imported & HEAVY


def test_serve_on_a_port_in_use_says_so_before_loading_the_policy(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        argv = [*command("actlab-serve"), f"checkpoint={tmp_path / 'policy'}", f"serve.port={port}"]
        status, _, lines, imported = run_logging_imports(argv, tmp_path)
    assert status == 2
    assert lines == [
        f"error: serve.port={port}: already in use on 127.0.0.1 (another server listens there); stop it or pick "
        "another serve.port (0 = any free port)"
    ]
    assert not imported & HEAVY  # the policy was not loaded
