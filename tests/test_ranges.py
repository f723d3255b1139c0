"""Every numeric key's valid range, declared beside its field (actlab.config.ranges) and checked at compose time
for all four commands, and on a policy's config.json when it is loaded: one line, `key=value: expected ...`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from actlab.config.compose import compose_eval
from actlab.config.policy import ACTPolicyConfig
from actlab.config.ranges import MAX_SIZE
from actlab.errors import ActlabError
from actlab.policy import ACTPolicy
from tests.conftest import REPO, compose_train


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["dataset.batch_size=0"], "dataset.batch_size=0: expected an integer >= 1"),
        (["dataset.batch_size=-1"], "dataset.batch_size=-1: expected an integer >= 1"),
        (["dataset.num_workers=-1"], "dataset.num_workers=-1: expected an integer >= 0"),
        (["dataset.val_split=1.0"], r"dataset.val_split=1.0: expected a number in \[0, 1\)"),
        (["model.chunk_size=0"], rf"model.chunk_size=0: expected an integer in \[1, {MAX_SIZE}\]"),
        (["model.n_action_steps=0"], r"model.n_action_steps=0: expected an integer in \[1, model.chunk_size \(100\)\]"),
        (["model.dim_feedforward=1000000000"], "model.dim_feedforward=1000000000: expected an integer in"),
        (["model.n_heads=0"], "model.n_heads=0: expected an integer in"),
        (["model.latent_dim=-4"], "model.latent_dim=-4: expected an integer in"),
        (["model.dropout=1.0"], r"model.dropout=1.0: expected a number in \[0, 1\)"),
        (["model.kl_weight=-1"], "model.kl_weight=-1.0: expected a number >= 0"),
        (["model.feedforward_activation=swish"], "model.feedforward_activation='swish' is not one of"),
        (["model.optimizer.lr=0"], "model.optimizer.lr=0.0: expected a number > 0"),
        (["model.optimizer.weight_decay=-0.1"], "model.optimizer.weight_decay=-0.1: expected a number >= 0"),
        (["trainer.max_steps=-1"], "trainer.max_steps=-1: expected an integer >= 0"),
        (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1.0: expected a number >= 0"),
        (["model.optimizer.lr=nan"], "model.optimizer.lr=nan: expected a number > 0"),
        (["env=lift", "env.eval_episodes=0"], "env.eval_episodes=0: expected an integer >= 1"),
        (["env=lift", "env.eval_freq=-5"], "env.eval_freq=-5: expected an integer >= 0"),
        (["seed=-1"], "seed=-1: expected an integer in"),
    ],
)
def test_train_keys_out_of_range_fail_at_compose_time(tmp_path, overrides, message):
    with pytest.raises(ActlabError, match=message):
        compose_train(overrides, tmp_path)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["control.episodes=-1"], "control.episodes=-1: expected an integer >= 1"),
        (["control.max_steps=-3"], "control.max_steps=-3: expected an integer >= 1"),
        (["control.max_latency=-1"], "control.max_latency=-1.0: expected a number > 0"),
        (["control.clip_margin=-1"], "control.clip_margin=-1.0: expected a number >= 0"),
        (["control.frequency=0"], "control.frequency=0.0: expected a number > 0"),
        (["control.refill_threshold=1.5"], r"control.refill_threshold=1.5: expected a number in \[0, 1\]"),
        (["control.backoff_max=0.01"], "control.backoff_max=0.01 is below control.backoff_min=0.1"),
    ],
)
def test_deploy_keys_out_of_range_fail_at_compose_time(tmp_path, overrides, message):
    with pytest.raises(ActlabError, match=message):
        compose_eval(["env=lift", *overrides], tmp_path, "deploy")


def test_a_null_max_steps_is_in_range(tmp_path):
    assert compose_eval(["env=lift", "control.max_steps=null"], tmp_path, "deploy").control.max_steps is None


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["serve.port=70000"], r"serve.port=70000: expected an integer in \[0, 65535\]"),
        (["serve.port=-1"], r"serve.port=-1: expected an integer in \[0, 65535\]"),
    ],
)
def test_serve_keys_out_of_range_fail_at_compose_time(tmp_path, overrides, message):
    with pytest.raises(ActlabError, match=message):
        compose_eval(["env=lift", *overrides], tmp_path, "serve")


def test_eval_workers_out_of_range_fail_at_compose_time(tmp_path):
    with pytest.raises(ActlabError, match="eval.num_workers=0: expected an integer >= 1"):
        compose_eval(["env=lift", "eval.num_workers=0"], tmp_path, "eval")


def policy_config() -> dict:
    config = ACTPolicyConfig(
        input_features={"observation.state": {"type": "STATE", "shape": [3]}},
        output_features={"action": {"type": "ACTION", "shape": [2]}},
        encoder={"name": "resnet18", "pretrained": None},
        chunk_size=4,
        n_action_steps=4,
        dim_model=16,
        n_heads=2,
        dim_feedforward=32,
        n_encoder_layers=1,
        n_vae_encoder_layers=1,
        latent_dim=4,
        action_range={"min": [-1.0, -2.0], "max": [1.0, 2.0]},
    )
    return json.loads(json.dumps(config.to_dict()))


def set_key(data: dict, key: str, value) -> None:
    *parents, last = key.split("/")
    for part in parents:
        data = data[part]
    data[last] = value


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("n_heads", 0, "model.n_heads=0: expected an integer in"),
        ("input_features/observation.state/shape", [-3], r"feature 'observation.state' has shape \[-3\]"),
        ("feedforward_activation", "swish", "model.feedforward_activation='swish' is not one of"),
        ("feedforward_activation", 3, "model.feedforward_activation=3 is not one of"),
        ("encoder", None, "encoder is null"),
        ("n_action_steps", 0, r"model.n_action_steps=0: expected an integer in \[1, model.chunk_size \(4\)\]"),
        ("n_action_steps", 5, "model.n_action_steps=5 exceeds model.chunk_size=4"),
        ("dim_feedforward", 1e9, rf"model.dim_feedforward=1000000000.0: expected an integer in \[1, {MAX_SIZE}\]"),
        ("dim_model", 16.0, "model.dim_model=16.0: expected an integer in"),
        ("chunk_size", "4", "model.chunk_size='4': expected an integer in"),
        ("dropout", float("nan"), r"model.dropout=nan: expected a number in \[0, 1\)"),
        ("action_range/min", [float("nan"), 0.0], r"action_range.min=\[nan, 0.0\]; expected finite numbers"),
        ("action_range/max", [1.0, 2.0, 3.0], "action_range.max=.*expected a list of 2 numbers"),
        ("action_range", {"min": [0, 0]}, "action_range=.*expected"),
    ],
)
def test_a_bad_policy_config_json_is_one_line_naming_the_file(tmp_path, key, value, message):
    data = policy_config()
    set_key(data, key, value)
    (tmp_path / "config.json").write_text(json.dumps(data))  # NaN as JSON's NaN, as Python writes it
    with pytest.raises(ActlabError, match=message) as error:
        ACTPolicyConfig.load(tmp_path / "config.json")
    assert str(error.value).startswith(f"{tmp_path / 'config.json'}: ") and "\n" not in str(error.value)
    (tmp_path / "model.safetensors").write_bytes(b"not read: the config is refused first")
    with pytest.raises(ActlabError, match=message):
        ACTPolicy.from_pretrained(tmp_path)


def test_the_policy_config_in_range_loads(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(policy_config()))
    assert ACTPolicyConfig.load(tmp_path / "config.json").n_action_steps == 4


def run(args: list[str], cwd: Path, program: str = "train.py") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("UNSET_FOR_ACTLAB_TEST", None)
    command = [sys.executable, str(REPO / program)] if program.endswith(".py") else [program]
    return subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args,line",
    [
        (["dataset.batch_size=0"], "error: dataset.batch_size=0: expected an integer >= 1"),
        (["model.chunk_size=0"], f"error: model.chunk_size=0: expected an integer in [1, {MAX_SIZE}]"),
        (
            ["dataset.root=${oc.env:UNSET_FOR_ACTLAB_TEST}"],
            "error: dataset.root=${oc.env:UNSET_FOR_ACTLAB_TEST}: KeyError raised while resolving interpolation: "
            "\"Environment variable 'UNSET_FOR_ACTLAB_TEST' not found\"",
        ),
        (["dataset.root=${nope.key}"], "error: dataset.root=${nope.key}: Interpolation key 'nope.key' not found"),
    ],
)
def test_train_command_line_is_one_line_exit_2_nothing_written(tmp_path, args, line):
    done = run(["model=tiny", *args], tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == line and "Traceback" not in done.stderr
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_deploy_command_checks_ranges_at_start(tmp_path):
    deploy = str(Path(sys.executable).parent / "actlab-deploy")
    done = run(["policy.server=ws://127.0.0.1:9", "env=lift", "control.clip_margin=-1"], tmp_path, deploy)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "error: control.clip_margin=-1.0: expected a number >= 0"
    assert "Traceback" not in done.stderr and not (tmp_path / "outputs").exists()


def test_an_npy_dataset_at_zero_fps_is_refused_at_compose_time(tmp_path):
    with pytest.raises(ActlabError, match=r"dataset.fps=0.0: expected a number > 0"):
        compose_train(["dataset=npy", "dataset.root=/nonexistent", "dataset.fps=0"], tmp_path)
