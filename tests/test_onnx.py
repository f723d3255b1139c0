"""`actlab-export CHECKPOINT OUT format=onnx`: policy.onnx + policy.json for every encoder and camera fusion,
history and state-only policies, checked against PyTorch's fp32 chunk; a consumer needs policy.json alone;
refusals and failures are one line and leave nothing at OUT."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from actlab.export import cli, onnx_check
from actlab.export import onnx as onnx_export
from actlab.export.onnx_graph import graph_inputs
from actlab.policy import ACTPolicy, ACTPolicyConfig
from tests.conftest import REPO, write_lerobot_dataset
from tests.test_policy import SMALL, features, random_stats

RESNET = {"name": "resnet18", "pretrained": None}
CAMERAS = ("top", "wrist")
HW = (32, 40)
DIFF = re.compile(r"max \|action difference\| (\S+) ")


def save_policy(folder: Path, encoder: dict | None = None, cameras=CAMERAS, hw=HW, **overrides) -> ACTPolicy:
    """A random-init policy (SMALL sizes) saved as a checkpoint folder; features as `dataset` writes them."""
    inputs, outputs = features(cameras, hw=hw, state=6, env=4, action=5)
    torch.manual_seed(0)
    config = ACTPolicyConfig(
        input_features=inputs,
        output_features=outputs,
        encoder=encoder or RESNET,
        fps=10.0,
        action_names=[f"joint_{i}" for i in range(5)],
        action_range={"min": [-1.0] * 5, "max": [1.0] * 5},
        **{**SMALL, **overrides},
    )
    policy = ACTPolicy(config, random_stats({**inputs, **outputs}, np.random.default_rng(0)))
    policy.save_pretrained(folder)
    return policy


def with_training_run(folder: Path, dataset: Path, tmp: Path) -> Path:
    """The hyperparameters.json a training run writes beside the policy, as far as the export reads it."""
    run = {
        "dataset": {"name": "lerobot", "format": "lerobot", "root": str(dataset)},
        "paths": {"data_dir": str(tmp), "cache_dir": str(tmp / "cache")},
    }
    (folder / "hyperparameters.json").write_text(json.dumps(run))
    return folder


def export(checkpoint: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    """actlab-export's main in this process: (exit status, stdout, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    status = 0
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            cli.main([str(checkpoint), str(out), *(extra or ["format=onnx"])])
        except SystemExit as e:
            status = e.code
    return status, stdout.getvalue(), stderr.getvalue()


def printed_diff(stdout: str) -> float:
    return float(DIFF.search(stdout).group(1))


def nothing_left(out: Path) -> bool:
    """No OUT and no temporary folder of it beside it."""
    return not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def pytorch_chunk(policy: ACTPolicy, feed: dict[str, np.ndarray]) -> np.ndarray:
    return policy.predict_action_chunk(onnx_check.to_torch(feed, graph_inputs(policy.config))).numpy()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "cams"
    return write_lerobot_dataset(root, episodes=3, frames=12, cameras=CAMERAS, video=False, image_hw=HW)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, dataset) -> tuple[Path, Path, str]:
    """resnet18 (frozen batch norm, layer4, no fusion), two cameras, with its training dataset reachable."""
    tmp = tmp_path_factory.mktemp("onnx")
    checkpoint = tmp / "checkpoint"
    save_policy(checkpoint)
    with_training_run(checkpoint, dataset, tmp)
    status, stdout, stderr = export(checkpoint, tmp / "out")
    assert status == 0, stderr
    return checkpoint, tmp / "out", stdout


# ----------------------------------------------------------------------------------- export and check
@pytest.mark.slow
def test_export_writes_one_checked_graph_and_its_spec(exported, dataset):
    import onnx

    checkpoint, out, stdout = exported
    print(f"resnet18-frozen_bn-layer4-none: {stdout.splitlines()[-1]}")
    assert {p.name for p in out.iterdir()} == {"policy.onnx", "policy.json"}
    assert f"100 random observations and 20 dataset observations (20 frames of {dataset})" in stdout
    assert printed_diff(stdout) <= 1e-4
    model = onnx.load(str(out / "policy.onnx"))
    onnx.checker.check_model(model, full_check=True)
    names = {init.name for init in model.graph.initializer}
    assert not [n for n in names if "vae_encoder" in n]  # the VAE encoder is left out
    assert [i.name for i in model.graph.input] == [
        "observation.state",
        "observation.environment_state",
        "observation.images.top",
        "observation.images.wrist",
    ]
    assert [o.name for o in model.graph.output] == ["action"]


@pytest.mark.slow
def test_policy_json_says_what_a_runtime_needs(exported):
    checkpoint, out, stdout = exported
    spec = json.loads((out / "policy.json").read_text())
    assert [(i["name"], i["dtype"], i["shape"], i["layout"]) for i in spec["inputs"]] == [
        ("observation.state", "float32", [1, 6], "BD"),
        ("observation.environment_state", "float32", [1, 4], "BD"),
        ("observation.images.top", "uint8", [1, 32, 40, 3], "BHWC"),
        ("observation.images.wrist", "uint8", [1, 32, 40, 3], "BHWC"),
    ]
    assert spec["outputs"] == [
        {
            "name": "action",
            "dtype": "float32",
            "shape": [1, 10, 5],
            "layout": "B, chunk step, action dimension",
            "description": "the action chunk in the dataset's units, its first action for now",
        }
    ]
    assert spec["batch"]["axis"] == 0 and spec["batch"]["dynamic"] is True
    assert (spec["fps"], spec["chunk_size"], spec["n_action_steps"], spec["n_obs_steps"]) == (10.0, 10, 10, 1)
    assert spec["temporal_ensemble_coeff"] is None
    assert spec["action_names"] == [f"joint_{i}" for i in range(5)]
    assert spec["action_range"] == {"min": [-1.0] * 5, "max": [1.0] * 5}
    assert (spec["model"], spec["opset"], spec["actlab_version"]) == ("policy.onnx", 18, "0.1.0")
    check = spec["check"]
    assert (check["random_observations"], check["dataset_observations"]) == (100, 20)
    assert check["max_abs_action_difference"] == pytest.approx(printed_diff(stdout), rel=0.06)


@pytest.mark.slow
def test_a_consumer_needs_policy_json_alone(exported):
    """Inputs built from policy.json's names, dtypes and shapes (numpy only) give PyTorch's chunk, for a
    batch of one and, on the dynamic batch axis, of three."""
    import onnxruntime as ort

    checkpoint, out, _ = exported
    spec = json.loads((out / "policy.json").read_text())
    session = ort.InferenceSession(str(out / spec["model"]), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    policy = ACTPolicy.from_pretrained(checkpoint)
    for batch in (1, 3):
        feed = {}
        for item in spec["inputs"]:
            shape = [batch, *item["shape"][1:]]
            if item["dtype"] == "uint8":
                feed[item["name"]] = rng.integers(0, 256, shape, dtype=np.uint8)
            else:
                feed[item["name"]] = rng.standard_normal(shape).astype(item["dtype"])
        (chunk,) = session.run([spec["outputs"][0]["name"]], feed)
        assert list(chunk.shape) == [batch, *spec["outputs"][0]["shape"][1:]]
        assert np.abs(chunk - pytorch_chunk(policy, feed)).max() <= 1e-4


TINY_CLIP = "actlab-test-ViT-2L-32"  # open_clip's ViT layout, 2 layers of width 128: the same graph, quicker


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> str:
    import open_clip

    vision = {"image_size": 224, "layers": 2, "width": 128, "patch_size": 32}
    text = {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 1}
    path = tmp_path_factory.mktemp("open_clip") / f"{TINY_CLIP}.json"
    path.write_text(json.dumps({"embed_dim": 64, "vision_cfg": vision, "text_cfg": text}))
    open_clip.add_model_config(path)
    return TINY_CLIP


CLIP = {"name": "clip", "pretrained": None, "model_name": TINY_CLIP}
ENCODER_CASES = {
    "resnet18-group_norm-layer3-mean": (dict(RESNET, norm="group_norm", feature_layer="layer3", fuse="mean"), {}),
    "resnet18-frozen_bn-layer3-gated-history3": (
        dict(RESNET, feature_layer="layer3", fuse="gated"),
        {"n_obs_steps": 3},
    ),
    "pri3d18-concat_mlp": ({"name": "pri3d", "pretrained": None, "depth": 18, "fuse": "concat_mlp"}, {}),
    "clip-none-240x320": (CLIP, {"cameras": ("top",), "hw": (240, 320)}),  # resized (antialiased) in the graph
    "clip-gated": (dict(CLIP, fuse="gated"), {}),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(ENCODER_CASES))
def test_every_encoder_and_fusion_exports_within_1e4(tmp_path, dataset, tiny_clip, case):
    encoder, overrides = ENCODER_CASES[case]
    policy = save_policy(tmp_path / "checkpoint", encoder, **overrides)
    if "hw" not in overrides:  # the dataset has these cameras: its frames are checked too (with history as well)
        with_training_run(tmp_path / "checkpoint", dataset, tmp_path)
    status, stdout, stderr = export(tmp_path / "checkpoint", tmp_path / "out")
    assert status == 0, stderr
    print(f"{case}: {stdout.splitlines()[-1]}")
    assert printed_diff(stdout) <= 1e-4
    spec = json.loads((tmp_path / "out" / "policy.json").read_text())
    assert [i["name"] for i in spec["inputs"]] == [s.name for s in graph_inputs(policy.config)]
    if policy.config.n_obs_steps > 1:
        assert spec["inputs"][-1] == {
            "name": "observation_is_pad",
            "dtype": "bool",
            "shape": [1, 3],
            "layout": "BT",
            "description": "true for history steps before the episode's first frame (fill them with that frame); "
            "steps oldest first, the last is now",
        }
        assert spec["inputs"][2]["shape"] == [1, 3, 32, 40, 3]


@pytest.mark.slow
def test_state_only_policy_exports_in_a_subprocess(tmp_path):
    save_policy(tmp_path / "checkpoint", cameras=())
    out = tmp_path / "out"
    command = [sys.executable, "-m", "actlab.export.cli", str(tmp_path / "checkpoint"), str(out), "--format", "onnx"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr
    print(f"state-only: {result.stdout.splitlines()[-1]}")
    assert "120 random observations and no dataset observations" in result.stdout
    assert printed_diff(result.stdout) <= 1e-4
    spec = json.loads((out / "policy.json").read_text())
    assert [i["name"] for i in spec["inputs"]] == ["observation.state", "observation.environment_state"]


@pytest.mark.slow
def test_a_difference_above_the_limit_fails_and_leaves_nothing(tmp_path, monkeypatch):
    save_policy(tmp_path / "checkpoint", cameras=())
    monkeypatch.setattr(onnx_export, "TOLERANCE", -1.0)  # any difference is too large
    status, stdout, stderr = export(tmp_path / "checkpoint", tmp_path / "out")
    assert status == 2 and stdout == ""
    assert re.fullmatch(r"error: ONNX Runtime's chunk differs from .* by up to \S+ in action units .*\n", stderr)
    assert nothing_left(tmp_path / "out")


@pytest.mark.slow
def test_dataset_frames_carry_their_history_and_its_padding(tmp_path, dataset):
    policy = save_policy(tmp_path / "checkpoint", n_obs_steps=3)
    with_training_run(tmp_path / "checkpoint", dataset, tmp_path)
    frames, source = onnx_check.dataset_observations(tmp_path / "checkpoint", policy, 20)
    assert (len(frames), source) == (20, f"20 frames of {dataset}")
    first = frames[0]  # the first episode's first frame: two steps of history before it, filled with it
    assert first["observation_is_pad"].tolist() == [[True, True, False]]
    images = first["observation.images.top"]
    assert images.dtype == np.uint8 and images.shape == (1, 3, 32, 40, 3)
    assert np.array_equal(images[0, 0], images[0, 2]) and first["observation.state"].dtype == np.float32
    assert [[True, False, False]] in [f["observation_is_pad"].tolist() for f in frames]  # a later episode's start


def test_a_dataset_that_is_not_here_is_said_and_nothing_is_fetched(tmp_path):
    policy = save_policy(tmp_path / "checkpoint", cameras=())
    frames, source = onnx_check.dataset_observations(tmp_path / "checkpoint", policy, 20)
    assert frames == [] and source.endswith("checkpoint has no hyperparameters.json to find its training dataset")
    with_training_run(tmp_path / "checkpoint", tmp_path / "gone", tmp_path)
    frames, source = onnx_check.dataset_observations(tmp_path / "checkpoint", policy, 20)
    assert (frames, source) == ([], f"the run's dataset {tmp_path / 'gone'} is not on this machine")


# ----------------------------------------------------------------------------------- refusals (fast)
def test_graph_inputs_are_the_cameras_layout_with_history_and_pad():
    inputs, outputs = features(("top",), hw=(24, 32))
    config = ACTPolicyConfig(input_features=inputs, output_features=outputs, encoder=RESNET, n_obs_steps=2, **SMALL)
    assert [(s.name, s.dtype, s.shape, s.layout) for s in graph_inputs(config)] == [
        ("observation.state", "float32", (2, 6), "BTD"),
        ("observation.environment_state", "float32", (2, 5), "BTD"),
        ("observation.images.top", "uint8", (2, 24, 32, 3), "BTHWC"),
        ("observation_is_pad", "bool", (2,), "BT"),
    ]


def test_an_existing_out_is_refused_and_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    status, stdout, stderr = export(tmp_path / "no-such-checkpoint", out)
    assert (status, stdout) == (2, "")
    assert stderr == f"error: {out} already exists; choose a new folder\n"
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_a_weight_that_is_not_finite_is_one_line_and_nothing_is_written(tmp_path):
    policy = save_policy(tmp_path / "checkpoint", cameras=())
    with torch.no_grad():
        policy.model.action_head.weight[0, 0] = float("nan")
    policy.save_pretrained(tmp_path / "checkpoint")
    status, _, stderr = export(tmp_path / "checkpoint", tmp_path / "out")
    assert status == 2
    assert "its tensor 'model.action_head.weight' is not finite" in stderr and stderr.count("\n") == 1
    assert nothing_left(tmp_path / "out")


def test_weights_too_large_for_one_onnx_file_are_refused_before_anything_is_written(tmp_path, monkeypatch):
    save_policy(tmp_path / "checkpoint", cameras=())
    monkeypatch.setattr(onnx_export, "MAX_WEIGHT_BYTES", 1000)
    status, _, stderr = export(tmp_path / "checkpoint", tmp_path / "out")
    assert status == 2 and "exceed what one ONNX file holds (2 GiB); nothing was written" in stderr
    assert nothing_left(tmp_path / "out")


def test_an_exporter_failure_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    save_policy(tmp_path / "checkpoint", cameras=())

    def fail(*args, **kwargs):
        raise RuntimeError("unsupported operator aten::frobnicate\nmore details")

    monkeypatch.setattr(torch.onnx, "export", fail)
    status, _, stderr = export(tmp_path / "checkpoint", tmp_path / "out")
    assert status == 2
    failed = "PyTorch's exporter failed (RuntimeError: unsupported operator aten::frobnicate); nothing was written"
    assert stderr.endswith(f"to ONNX: {failed}\n")
    assert stderr.count("\n") == 1 and nothing_left(tmp_path / "out")


def test_a_difference_that_is_not_finite_fails(tmp_path, monkeypatch):
    """ONNX Runtime giving NaN fails the check (max(0.0, nan) would be 0.0)."""
    save_policy(tmp_path / "checkpoint", cameras=())

    class NaNSession:
        def run(self, names, feed):
            batch = next(iter(feed.values())).shape[0]
            return [np.full((batch, 10, 5), np.nan, np.float32)]

    monkeypatch.setattr(onnx_export, "write_onnx", lambda policy, path, checkpoint: path.write_bytes(b""))
    monkeypatch.setattr(onnx_export, "onnx_session", lambda path: NaNSession())
    status, _, stderr = export(tmp_path / "checkpoint", tmp_path / "out")
    assert status == 2 and "by up to nan in action units" in stderr
    assert nothing_left(tmp_path / "out")


# ----------------------------------------------------------------------------------- command line (fast)
@pytest.mark.parametrize(
    "args, chosen",
    [([], "lerobot"), (["format=lerobot"], "lerobot"), (["format=onnx"], "onnx"), (["--format", "onnx"], "onnx")],
)
def test_format_is_chosen_as_the_issue_writes_it_or_as_an_option(tmp_path, monkeypatch, args, chosen):
    calls = []
    monkeypatch.setattr(cli.lerobot, "main", lambda argv: calls.append(("lerobot", argv)))
    monkeypatch.setattr(cli, "export_onnx", lambda checkpoint, out: calls.append(("onnx", [str(checkpoint)])))
    with contextlib.suppress(Exception):  # the stub writes no OUT to report on
        cli.main(["ck", str(tmp_path / "out"), *args, "--push-to-hub", "me/act"])
    assert calls[0][0] == chosen
    if chosen == "lerobot":
        assert calls[0][1] == ["ck", str(tmp_path / "out"), "--push-to-hub", "me/act"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["format=tflite"], "expected format=lerobot or format=onnx, got 'format=tflite'"),
        (["--format", "tflite"], "invalid choice: 'tflite'"),
        (["format=onnx", "--format", "lerobot"], "format=onnx and --format lerobot disagree; give one"),
    ],
)
def test_an_unknown_or_contradictory_format_is_refused(capsys, args, message):
    with pytest.raises(SystemExit) as e:
        cli.main(["ck", "out", *args])
    assert e.value.code == 2 and message in capsys.readouterr().err
