"""A folder the user only meant to load runs no code: a LeRobot policy folder whose processor names anything
but LeRobot's own ACT steps is refused with one line before it is imported or built, by every command that
loads a policy. And `actlab-export` fails with one line, leaving nothing at OUT, when the policy is not finite
or OUT cannot be written."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from actlab.errors import ActlabError
from actlab.export.lerobot import compare_with_lerobot, export_policy
from actlab.policy import ACTPolicy
from actlab.policy.lerobot_folder import identity_stats
from tests.conftest import REPO
from tests.test_lerobot_policy import DEFAULT_MAPPING, lerobot_policy, tiny_config

PRE = "policy_preprocessor.json"
REFUSED = "refused: actlab loads only LeRobot's own ACT processor steps and imports nothing a folder names"
PAYLOAD = """\
from pathlib import Path

SENTINEL = Path({sentinel!r})
SENTINEL.write_text("imported")


class Payload:
    def __init__(self, *args, **kwargs):
        SENTINEL.write_text("built")
"""


# ----------------------------------------------------------------------------------- helpers
@pytest.fixture
def payload(tmp_path, monkeypatch) -> str:
    """A module `actlab_payload_<n>` on sys.path (and PYTHONPATH) whose import or class writes `sentinel`."""
    name = "actlab_payload_" + re.sub(r"\W", "_", tmp_path.name)
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / f"{name}.py").write_text(PAYLOAD.format(sentinel=str(tmp_path / "sentinel")))
    monkeypatch.syspath_prepend(str(tmp_path / "modules"))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path / "modules"), os.getenv("PYTHONPATH")]))
    )
    return name


def lerobot_folder(folder: Path) -> Path:
    """A LeRobot ACT folder written by LeRobot's own classes (policy, pre- and post-processor)."""
    policy, pre, post, _ = lerobot_policy(DEFAULT_MAPPING)
    for part in (policy, pre, post):
        part.save_pretrained(folder)
    return folder


def tamper(folder: Path, change) -> dict:
    path = folder / PRE
    pipeline = json.loads(path.read_text())
    change(pipeline["steps"])
    path.write_text(json.dumps(pipeline))
    return pipeline


def assert_refused(error: ActlabError, folder: Path, message: str, tmp_path: Path, payload: str) -> None:
    assert str(error) == f"{folder / PRE}: {message}" and "\n" not in str(error)
    assert not (tmp_path / "sentinel").exists() and payload not in sys.modules


TAMPERED = [
    (
        lambda steps, p: steps.insert(0, {"class": f"{p}.Payload", "config": {}}),
        "step 0 names a class to import ('{p}.Payload'); " + REFUSED,
    ),
    (
        lambda steps, p: steps[3].update({"class": f"{p}.Payload"}),  # LeRobot prefers registry_name; we refuse
        "step 3 names a class to import ('{p}.Payload'); " + REFUSED,
    ),
    (
        lambda steps, p: steps.append({"registry_name": "payload_processor", "config": {}}),
        "step 4 has registry_name 'payload_processor', not one of rename_observations_processor, "
        "to_batch_processor, device_processor, normalizer_processor, unnormalizer_processor; " + REFUSED,
    ),
    (
        # LeRobot's own step, which downloads and runs code when built
        lambda steps, p: steps.append(
            {
                "registry_name": "action_tokenizer_processor",
                "config": {"action_tokenizer_name": "attacker/tokenizer", "trust_remote_code": True},
            }
        ),
        "step 4 has registry_name 'action_tokenizer_processor', not one of rename_observations_processor, "
        "to_batch_processor, device_processor, normalizer_processor, unnormalizer_processor; " + REFUSED,
    ),
    (
        lambda steps, p: steps.insert(1, f"{p}.Payload"),
        "step 1 is a JSON str, not a processor step; " + REFUSED,
    ),
    (
        lambda steps, p: steps[3].update({"state_file": "../stats.safetensors"}),
        "step 3 (normalizer_processor): state_file '../stats.safetensors' is not a file in {folder} (state files "
        "are read from the folder itself, never downloaded)",
    ),
]
TAMPERED_IDS = ["class", "class_beside_registry_name", "unknown_name", "lerobot_tokenizer", "not_a_dict", "state_file"]


# ----------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("change,message", TAMPERED, ids=TAMPERED_IDS)
def test_tampered_processor_is_refused_before_anything_is_imported(tmp_path, payload, change, message):
    folder = lerobot_folder(tmp_path / "policy")
    tamper(folder, lambda steps: change(steps, payload))
    with pytest.raises(ActlabError) as e:
        ACTPolicy.from_pretrained(folder)
    assert_refused(e.value, folder, message.format(p=payload, folder=folder), tmp_path, payload)


def test_step_registered_at_runtime_outside_lerobot_is_refused(tmp_path, payload):
    """A registry name that code outside LeRobot registered (a new name, or one of LeRobot's re-registered)."""
    from lerobot.processor import ProcessorStepRegistry

    class Payload:
        def __init__(self, *args, **kwargs):
            (tmp_path / "sentinel").write_text("built")

    folder = lerobot_folder(tmp_path / "policy")
    lerobots = ProcessorStepRegistry.get("device_processor")
    ProcessorStepRegistry.register("payload_processor")(Payload)
    ProcessorStepRegistry.unregister("device_processor")
    ProcessorStepRegistry.register("device_processor")(Payload)
    try:
        with pytest.raises(ActlabError) as e:
            ACTPolicy.from_pretrained(folder)
        owner = f"{__name__}.{Payload.__qualname__}"
        assert_refused(
            e.value,
            folder,
            f"step 2 (device_processor) is registered to {owner}, not to LeRobot; " + REFUSED,
            tmp_path,
            payload,
        )
        tamper(folder, lambda steps: steps.__setitem__(2, {"registry_name": "payload_processor"}))
        with pytest.raises(ActlabError, match=r"step 2 has registry_name 'payload_processor', not one of"):
            ACTPolicy.from_pretrained(folder)
    finally:
        ProcessorStepRegistry.unregister("payload_processor")
        ProcessorStepRegistry.unregister("device_processor")
        ProcessorStepRegistry.register("device_processor")(lerobots)
    assert not (tmp_path / "sentinel").exists()


@pytest.mark.parametrize("command", ["eval", "deploy", "serve", "init_from"])
def test_every_command_that_loads_a_policy_refuses_a_tampered_folder(tmp_path, payload, command):
    from actlab.config.compose import compose_eval

    folder = lerobot_folder(tmp_path / "policy")
    tamper(folder, lambda steps: steps.insert(0, {"class": f"{payload}.Payload"}))
    with pytest.raises(ActlabError) as e:
        if command == "eval":
            from actlab.eval.cli import evaluate

            evaluate(compose_eval([f"checkpoint={folder}"], tmp_path / "eval"))
        elif command == "deploy":
            from actlab.deploy.cli import deploy

            deploy(compose_eval([f"checkpoint={folder}", "robot=sim"], tmp_path / "deploy", "deploy"))
        elif command == "serve":
            from actlab.deploy.server import serve

            serve(compose_eval([f"checkpoint={folder}", "serve.port=0"], tmp_path / "serve", "serve"))
        else:  # fine-tuning a policy of the same shape from the folder's weights
            from actlab.training.resume import init_weights

            init_weights(ACTPolicy(tiny_config()), str(folder))
    message = f"step 0 names a class to import ('{payload}.Payload'); {REFUSED}"
    assert_refused(e.value, folder, message, tmp_path, payload)


def test_actlab_export_of_a_tampered_folder_is_one_line_and_runs_nothing(tmp_path, payload):
    folder = lerobot_folder(tmp_path / "policy")
    tamper(folder, lambda steps: steps.insert(0, {"class": f"{payload}.Payload", "config": {}}))
    result = subprocess.run(
        [sys.executable, "-m", "actlab.export.lerobot", str(folder), str(tmp_path / "out")],
        cwd=REPO,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},  # PYTHONPATH holds the payload's folder
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr == f"error: {folder / PRE}: step 0 names a class to import ('{payload}.Payload'); {REFUSED}\n"
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "sentinel").exists() and not (tmp_path / "out").exists()


def test_untampered_lerobot_folder_still_loads(tmp_path):
    folder = lerobot_folder(tmp_path / "policy")
    policy = ACTPolicy.from_pretrained(folder)
    assert policy.config.chunk_size == 6


# ----------------------------------------------------------------------------------- export failures
@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """An exportable actlab policy folder (random weights, identity statistics)."""
    config = tiny_config()
    stats = {k: identity_stats(f) for k, f in {**config.input_features, **config.output_features}.items()}
    ACTPolicy(config, stats).save_pretrained(tmp_path / "checkpoint")
    return tmp_path / "checkpoint"


def test_export_of_nan_weights_is_one_line_naming_the_tensor(tmp_path, checkpoint):
    weights = load_file(checkpoint / "model.safetensors")
    name = "model.action_head.weight"
    weights[name][0, 0] = math.nan
    save_file(weights, checkpoint / "model.safetensors")
    with pytest.raises(ActlabError) as e:
        export_policy(checkpoint, tmp_path / "out")
    assert str(e.value) == (
        f"cannot export {checkpoint}: its tensor '{name}' is not finite (NaN or inf); nothing was written"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_a_nan_action_difference_fails_the_export(tmp_path, checkpoint, monkeypatch):
    """One NaN action among finite ones: `max(0.0, nan)` is 0.0, so the difference must be NaN-aware."""
    select_action = ACTPolicy.select_action
    calls = []

    def second_call_nan(self, observation):
        action = select_action(self, observation)
        calls.append(1)
        return torch.full_like(action, math.nan) if len(calls) == 2 else action

    monkeypatch.setattr(ACTPolicy, "select_action", second_call_nan)
    with pytest.raises(ActlabError) as e:
        export_policy(checkpoint, tmp_path / "out")
    assert str(e.value) == (
        f"LeRobot's reloaded policy differs from {checkpoint} by up to nan in action units (limit 1e-04); "
        "nothing was written"
    )
    assert len(calls) >= 2 and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


@pytest.mark.parametrize("where", ["proc", "file_in_the_way"])
def test_export_to_a_folder_that_cannot_be_written_is_one_line(tmp_path, checkpoint, where):
    """Tests run as root, where a read-only mode does not stop writes: /proc refuses new folders to anyone."""
    if where == "proc":
        out, parent = Path("/proc/actlab_export_test/out"), "/proc/actlab_export_test"
        expected = f"FileNotFoundError: [Errno 2] No such file or directory: '{parent}'"
    else:
        (tmp_path / "file").write_text("mine")
        out, parent = tmp_path / "file" / "out", tmp_path / "file"
        expected = f"FileExistsError: [Errno 17] File exists: '{parent}'"
    result = subprocess.run(
        [sys.executable, "-m", "actlab.export.lerobot", str(checkpoint), str(out)],
        cwd=REPO,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr
    assert result.stderr == f"error: cannot write {out} ({expected}); nothing was written\n"
    assert not Path(parent).is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"] + (
        ["file"] if where == "file_in_the_way" else []
    )
    if where == "file_in_the_way":
        assert (tmp_path / "file").read_text() == "mine"


def test_compare_with_lerobot_keeps_a_nan_difference(tmp_path, checkpoint, monkeypatch):
    assert export_policy(checkpoint, tmp_path / "out") <= 1e-4
    policy = ACTPolicy.from_pretrained(checkpoint)
    select_action = policy.select_action
    calls = []

    def second_call_nan(observation):
        calls.append(1)
        action = select_action(observation)
        return torch.full_like(action, math.nan) if len(calls) == 2 else action

    monkeypatch.setattr(policy, "select_action", second_call_nan)
    assert math.isnan(compare_with_lerobot(policy, tmp_path / "out", steps=4))
