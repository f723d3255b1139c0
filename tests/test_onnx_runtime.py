"""`policy.runtime=onnx` in actlab-eval, actlab-serve and actlab-deploy: only the chunk comes from ONNX Runtime
(the same queue, n_action_steps and temporal ensembling as PyTorch), checked at compose time, refusing an
export of another policy or an absent provider in one line; evaluation with it plays the same episodes as
PyTorch; and a client with onnxruntime and numpy alone (no torch, no actlab) acts from policy.json."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from actlab.config.compose import compose_eval
from actlab.deploy.policies import LocalPolicy
from actlab.deploy.server import PolicySession
from actlab.errors import ActlabError
from actlab.eval.cli import evaluate
from actlab.export.onnx import export_onnx
from actlab.features import to_policy_batch
from actlab.policy import ACTPolicy
from actlab.policy.loader import load_policy
from tests.conftest import REPO, compose_train, trained_checkpoint
from tests.test_onnx import save_policy

BLOCKER = """import sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("torch", "actlab"):
            raise ImportError(f"{name} is not installed here")

sys.meta_path.insert(0, Blocked())
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """A random-init two-camera resnet18 policy and its ONNX export."""
    tmp = tmp_path_factory.mktemp("onnx_runtime")
    save_policy(tmp / "checkpoint")
    export_onnx(tmp / "checkpoint", tmp / "onnx")
    return tmp / "checkpoint", tmp / "onnx"


def acting(tmp_path: Path, checkpoint: Path, *overrides: str, config: str = "eval") -> ACTPolicy:
    cfg = compose_eval([f"checkpoint={checkpoint}", *overrides], tmp_path / "run", config)
    return load_policy(cfg, "cpu")


def observations(policy: ACTPolicy, count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Camera-like observations (H x W x 3 bytes) around the policy's statistics."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        observation = {}
        for key, feature in policy.config.input_features.items():
            if feature.type == "VISUAL":
                observation[key] = rng.integers(0, 256, (*feature.shape[1:], 3), dtype=np.uint8)
            else:
                mean, std = (t.numpy() for t in policy.normalizer.mean_std(key))
                observation[key] = (mean + std * rng.standard_normal(feature.shape)).astype(np.float32)
        out.append(observation)
    return out


# ----------------------------------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    "config, overrides, message",
    [
        ("eval", ["policy.runtime=tensorrt"], "policy.runtime='tensorrt' is not one of ['torch', 'onnx']"),
        ("serve", ["policy.onnx=/somewhere"], "policy.onnx=/somewhere is read by policy.runtime=onnx only"),
        ("eval", ["policy.runtime=onnx", "policy.onnx_providers=[]"], "policy.onnx_providers=[]; expected a list"),
        ("eval", ["policy.runtime=onnx", "policy.onnx_providers=[cuda]"], "policy.onnx_providers=['cuda']"),
        ("deploy", ["policy.runtime=onnx", "policy.server=ws://robot:8000"], "runs it on the server"),
    ],
)
def test_runtime_keys_are_checked_when_the_config_is_composed(tmp_path, config, overrides, message):
    save_policy(tmp_path / "checkpoint", cameras=())
    with pytest.raises(ActlabError) as error:
        compose_eval([f"checkpoint={tmp_path / 'checkpoint'}", *overrides], tmp_path / "run", config)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_training_has_no_runtime_key(tmp_path):
    with pytest.raises(Exception, match="runtime"):
        compose_train(["model=tiny", "policy.runtime=onnx"], tmp_path)


@pytest.mark.parametrize("content", ["nothing", "not_an_export"])
def test_a_folder_that_is_not_an_export_is_one_line(tmp_path, content):
    save_policy(tmp_path / "checkpoint", cameras=())
    folder = tmp_path / "onnx"
    if content == "not_an_export":
        folder.mkdir()
        (folder / "policy.onnx").write_bytes(b"")
        (folder / "policy.json").write_text('{"format": "something else"}')
    with pytest.raises(ActlabError, match=r"policy.onnx=.*(no such folder|not an actlab ONNX policy description)"):
        acting(tmp_path, tmp_path / "checkpoint", "policy.runtime=onnx", f"policy.onnx={folder}")


@pytest.mark.slow
def test_a_bad_runtime_is_one_line_from_the_command(tmp_path):
    save_policy(tmp_path / "checkpoint", cameras=())
    command = [sys.executable, "-m", "actlab.eval.cli", f"checkpoint={tmp_path / 'checkpoint'}", "policy.runtime=tvm"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == ["error: policy.runtime='tvm' is not one of ['torch', 'onnx']"]


# ----------------------------------------------------------------------------------------- the backend
@pytest.mark.slow
@pytest.mark.parametrize(
    "inference", [["model.n_action_steps=3"], ["model.n_action_steps=1", "model.temporal_ensemble_coeff=0.01"]]
)
def test_only_the_chunk_comes_from_onnx_runtime(tmp_path, exported, inference):
    checkpoint, folder = exported
    torch_policy = acting(tmp_path / "t", checkpoint, *inference)
    onnx_policy = acting(tmp_path / "o", checkpoint, *inference, "policy.runtime=onnx", f"policy.onnx={folder}")
    assert torch_policy.chunk_backend is None and onnx_policy.chunk_backend is not None
    calls = []
    backend = onnx_policy.chunk_backend
    onnx_policy.use_chunk_backend(lambda observation: calls.append(1) or backend(observation))
    features = torch_policy.config.input_features
    for observation in observations(torch_policy, 7):
        batch = to_policy_batch(observation, features)
        theirs, ours = torch_policy.select_action(batch), onnx_policy.select_action(batch)
        assert (ours - theirs).abs().max() <= 1e-4
    chunks = 7 if "model.temporal_ensemble_coeff=0.01" in inference else 3  # ticks 0, 3, 6
    assert len(calls) == chunks
    # The control loop's and the server's in-process paths ask the same backend.
    observation = observations(torch_policy, 1, seed=1)[0]
    local = LocalPolicy(onnx_policy)
    chunk = local.chunk(local.observe(observation))
    session = PolicySession(onnx_policy)
    served, _ = session.infer(to_policy_batch(observation, features))
    reference = torch_policy.predict_action_chunk(to_policy_batch(observation, features))[0].numpy()
    assert len(calls) == chunks + 2
    np.testing.assert_allclose(chunk, reference, atol=1e-4)
    np.testing.assert_allclose(served, reference, atol=1e-4)


@pytest.mark.slow
def test_the_server_answers_with_onnx_runtime_chunks(tmp_path, exported):
    from actlab.deploy.client import PolicyClient
    from tests.test_deploy import ServerThread

    checkpoint, folder = exported
    torch_policy = acting(tmp_path / "t", checkpoint)
    onnx_policy = acting(tmp_path / "o", checkpoint, "policy.runtime=onnx", f"policy.onnx={folder}")
    server = ServerThread(onnx_policy)
    try:
        with PolicyClient(server.url) as client:
            for observation in observations(torch_policy, 2, seed=2):
                served = client.infer(observation)["actions"]
                batch = to_policy_batch(observation, torch_policy.config.input_features)
                np.testing.assert_allclose(served, torch_policy.predict_action_chunk(batch)[0].numpy(), atol=1e-4)
    finally:
        server.close()


@pytest.mark.slow
def test_an_export_of_another_checkpoint_is_refused(tmp_path, exported):
    checkpoint, folder = exported
    other = tmp_path / "other"
    shutil.copytree(checkpoint, other)
    weights = load_file(other / "model.safetensors")
    weights["model.action_head.bias"] = weights["model.action_head.bias"] + 1.0
    save_file(weights, other / "model.safetensors")
    with pytest.raises(ActlabError, match=r"does not compute this checkpoint's chunks: .* differs .* by \S+ in action"):
        acting(tmp_path, other, "policy.runtime=onnx", f"policy.onnx={folder}")
    save_policy(tmp_path / "state_only", cameras=())  # other inputs altogether
    with pytest.raises(ActlabError, match="was exported from another policy"):
        acting(tmp_path, tmp_path / "state_only", "policy.runtime=onnx", f"policy.onnx={folder}")


@pytest.mark.slow
def test_a_provider_this_onnxruntime_lacks_is_one_line(tmp_path, exported):
    import onnxruntime

    if "TensorrtExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has TensorRT")
    checkpoint, folder = exported
    overrides = ["policy.runtime=onnx", f"policy.onnx={folder}", "policy.onnx_providers=[TensorrtExecutionProvider]"]
    with pytest.raises(ActlabError, match=r"\['TensorrtExecutionProvider'\] not available in this onnxruntime"):
        acting(tmp_path, checkpoint, *overrides)


# ----------------------------------------------------------------------------------------- a client without torch
@pytest.mark.slow
def test_the_minimal_client_runs_without_torch_or_actlab(tmp_path, exported):
    _, folder = exported
    (tmp_path / "blocker").mkdir()
    (tmp_path / "blocker" / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "blocker")}
    for module in ("torch", "actlab"):
        blocked = subprocess.run([sys.executable, "-c", f"import {module}"], env=env, capture_output=True, text=True)
        assert blocked.returncode == 1 and f"{module} is not installed here" in blocked.stderr
    client = REPO / "examples" / "onnx_client.py"
    done = subprocess.run(
        [sys.executable, str(client), str(folder), "12"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 12 and lines[0].startswith("tick 0: ") and len(lines[0].split()) == 2 + 5
    # Its actions are the policy's for the same (all-zero) observation.
    policy = ACTPolicy.from_pretrained(exported[0])
    zeros = {
        k: torch.zeros(1, *f.shape, dtype=torch.uint8 if f.type == "VISUAL" else torch.float32)
        for k, f in policy.config.input_features.items()
    }
    first = policy.predict_action_chunk(zeros)[0, 0].numpy()
    np.testing.assert_allclose([float(v) for v in lines[0].split()[2:]], first, atol=1e-3)
    assert len(client.read_text().splitlines()) <= 30


# ----------------------------------------------------------------------------------------- actlab-eval
@pytest.fixture(scope="module")
def lift_checkpoint(tmp_path_factory) -> Path:
    """A state-only quickstart policy after 2 training steps."""
    return trained_checkpoint(tmp_path_factory.mktemp("lift"))


@pytest.mark.slow
def test_evaluation_with_onnx_runtime_plays_the_same_20_episodes(tmp_path, lift_checkpoint):
    common = [f"checkpoint={lift_checkpoint}", "env.final_eval_episodes=20", "env.max_steps=15", "eval.videos=0"]
    torch_metrics = evaluate(compose_eval(common, tmp_path / "torch"))
    onnx_metrics = evaluate(compose_eval([*common, "policy.runtime=onnx"], tmp_path / "onnx"))
    assert (tmp_path / "onnx" / "onnx" / "policy.json").is_file()  # exported into the run directory
    episodes = {}
    for name in ("torch", "onnx"):
        lines = (tmp_path / name / "eval" / "episodes.jsonl").read_text().splitlines()
        episodes[name] = [json.loads(line) for line in lines]
    assert [e["seed"] for e in episodes["onnx"]] == list(range(100000, 100020))
    same = [(e["seed"], e["success"], e["length"]) for e in episodes["torch"]]
    assert [(e["seed"], e["success"], e["length"]) for e in episodes["onnx"]] == same
    np.testing.assert_allclose(
        [e["reward"] for e in episodes["onnx"]], [e["reward"] for e in episodes["torch"]], atol=1e-3
    )
    assert onnx_metrics["success_rate"] == torch_metrics["success_rate"]
