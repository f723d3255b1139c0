"""actlab-eval on trained checkpoints: simulator rollouts (metrics with confidence intervals, per-episode
results, videos, worker processes) and dataset replay (MAE/RMSE against a hand computation, plots,
videos), the checkpoint's settings overridden from the command line, and bad checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from actlab.config.compose import compose_eval
from actlab.data.datamodule import split_episodes
from actlab.errors import ActlabError
from actlab.eval.cli import evaluate
from actlab.sim.video import read_frames
from actlab.training.train import train
from tests.conftest import FAST, REPO, compose_train, trained_checkpoint, write_lerobot_dataset


def trained(tmp_path: Path, root: Path, *overrides: str) -> Path:
    """The `final/` checkpoint of a 2-step tiny run."""
    cfg = compose_train(
        [f"dataset.root={root}", "model=tiny", "dataset.batch_size=4", "trainer.max_steps=2", *FAST, *overrides],
        tmp_path,
    )
    train(cfg)
    return Path(cfg.paths.output_dir) / "checkpoints" / "final"


def run_eval(tmp_path: Path, checkpoint: Path, *overrides: str) -> tuple[dict, Path]:
    out = tmp_path / "eval_run"
    return evaluate(compose_eval([f"checkpoint={checkpoint}", *overrides], out)), out / "eval"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_lerobot_dataset(
        tmp_path_factory.mktemp("eval") / "ds", episodes=5, frames=14, cameras=("front",), env_state_dim=None
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, dataset) -> Path:
    return trained(tmp_path_factory.mktemp("run"), dataset, "encoder.pretrained=null", "dataset.val_split=0.4")


def constant_policy(checkpoint: Path, folder: Path) -> Path:
    """The checkpoint with a zeroed action head: it always predicts the dataset's mean action."""
    import shutil

    shutil.copytree(checkpoint, folder)
    weights = load_file(folder / "model.safetensors")
    for key in ("model.action_head.weight", "model.action_head.bias"):
        weights[key] = torch.zeros_like(weights[key])
    save_file(weights, folder / "model.safetensors")
    return folder


# ----------------------------------------------------------------------------------------------- dataset mode
def test_dataset_replay_metrics_match_a_hand_computation(tmp_path, checkpoint, dataset):
    folder = constant_policy(checkpoint, tmp_path / "constant")
    metrics, out = run_eval(tmp_path, folder)
    saved = json.loads((out / "dataset_metrics.json").read_text())
    assert saved["mae"] == pytest.approx(metrics["mae"])
    held_out = split_episodes(5, 0.4, 1000)[1].tolist()  # the training run's validation episodes
    assert metrics["episodes"] == held_out and len(held_out) == 2

    from actlab.config.datasets import LeRobotDatasetConfig
    from actlab.data.formats import load_store

    store = load_store(LeRobotDatasetConfig(name="ds", root=str(dataset)), tmp_path / "cache")
    recorded = np.concatenate(
        [store.arrays["action"][store.episode_starts[e] : store.episode_ends[e]] for e in held_out]
    )
    mean = store.stats["action"]["mean"]  # what a zero action head predicts, in action units
    assert metrics["frames"] == len(recorded) == 28
    np.testing.assert_allclose(metrics["mae"], np.abs(recorded - mean).mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["rmse"], np.sqrt(np.square(recorded - mean).mean()), rtol=1e-5)
    per_dim = [metrics["per_dimension"][f"action[{d}]"]["mae"] for d in range(5)]
    np.testing.assert_allclose(per_dim, np.abs(recorded - mean).mean(axis=0), rtol=1e-5)
    assert sorted(p.name for p in (out / "plots").iterdir()) == [f"episode_{e:03d}.png" for e in held_out]


def test_chosen_episodes_video_and_inference_overrides(tmp_path, checkpoint):
    metrics, out = run_eval(
        tmp_path,
        checkpoint,
        "eval.episodes=[1]",
        "eval.video=true",
        "model.temporal_ensemble_coeff=0.01",
        "model.n_action_steps=1",
    )
    assert metrics["episodes"] == [1] and metrics["frames"] == 14
    frames = read_frames(out / "videos" / "episode_001.mp4")  # readable by PyAV: the camera above the live plot
    assert frames.shape[0] == 14 and frames.shape[2] >= 640
    assert not list(checkpoint.parent.glob("**/eval"))  # nothing is written into the checkpoint's run


def test_changing_the_architecture_at_evaluation_is_one_line(tmp_path, checkpoint):
    with pytest.raises(ActlabError, match=r"^model.dim_model=64 but the checkpoint's policy has 128; only "):
        run_eval(tmp_path, checkpoint, "model.dim_model=64")
    with pytest.raises(ActlabError, match=r"^eval.episodes: \[9\] not in the dataset's episodes 0..4$"):
        run_eval(tmp_path, checkpoint, "eval.episodes=[9]")


@pytest.mark.slow
@pytest.mark.parametrize(
    "make,message",
    [
        (lambda tmp: tmp / "nowhere", "checkpoint={}: no such folder; expected a checkpoint folder"),
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "{} is not a policy folder: config.json is missing"),
    ],
)
def test_bad_checkpoint_folders_are_one_line_and_leave_nothing(tmp_path, make, message):
    import subprocess
    import sys

    folder = make(tmp_path)
    done = subprocess.run(
        [sys.executable, str(REPO / "eval.py"), f"checkpoint={folder}"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: " + message.format(folder))
    assert not (tmp_path / "outputs").exists()


# ----------------------------------------------------------------------------------------------- simulator mode
@pytest.fixture(scope="module")
def lift_checkpoint(tmp_path_factory) -> Path:
    return trained_checkpoint(tmp_path_factory.mktemp("lift"))


@pytest.mark.slow
def test_simulator_evaluation_writes_metrics_episodes_and_videos(tmp_path, lift_checkpoint):
    metrics, out = run_eval(tmp_path, lift_checkpoint, "env.final_eval_episodes=3", "env.max_steps=12", "eval.videos=2")
    assert metrics["episodes"] == 3 and metrics["task"] == "Lift" and metrics["seed"] == 100000
    assert 0 <= metrics["success_rate_ci95_low"] <= metrics["success_rate"] <= metrics["success_rate_ci95_high"] <= 1
    episodes = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert [e["seed"] for e in episodes] == [100000, 100001, 100002] and all(e["length"] == 12 for e in episodes)
    assert [Path(e["video"]).name if e["video"] else None for e in episodes] == [
        "episode_000.mp4",
        "episode_001.mp4",
        None,
    ]
    frames = read_frames(out / "videos" / "episode_000.mp4")  # state-only policy, rendered from env.video_camera
    assert frames.shape == (13, 240, 320, 3) and frames.std() > 10
    assert json.loads((out / "sim_metrics.json").read_text())["episodes_per_second"] > 0


@pytest.mark.slow
def test_worker_processes_play_the_same_episodes(tmp_path, lift_checkpoint):
    one, out_one = run_eval(
        tmp_path / "a", lift_checkpoint, "env.final_eval_episodes=3", "env.max_steps=10", "eval.videos=0"
    )
    two, out_two = run_eval(
        tmp_path / "b",
        lift_checkpoint,
        "env.final_eval_episodes=3",
        "env.max_steps=10",
        "eval.videos=1",
        "eval.num_workers=2",
    )
    a = [json.loads(line) for line in (out_one / "episodes.jsonl").read_text().splitlines()]
    b = [json.loads(line) for line in (out_two / "episodes.jsonl").read_text().splitlines()]
    assert [(e["seed"], e["length"], e["success"]) for e in a] == [(e["seed"], e["length"], e["success"]) for e in b]
    np.testing.assert_allclose([e["reward"] for e in a], [e["reward"] for e in b], atol=1e-3)
    assert two["num_workers"] == 2 and read_frames(out_two / "videos" / "episode_000.mp4").shape[0] == 11


def test_a_worker_reports_errors_in_one_line_and_keeps_serving():
    from actlab.sim.workers import start_workers

    with pytest.raises(ActlabError, match="invalid literal for int"):
        start_workers(2, "a test worker", int, "not a number")
    (worker,) = start_workers(1, "a test worker", dict)
    try:
        worker.submit("pop", "missing")
        with pytest.raises(ActlabError, match="^a test worker: 'missing'$"):
            worker.result()
        worker.submit("setdefault", "key", 3)
        assert worker.result() == 3
    finally:
        worker.close()
    assert not worker.process.is_alive()
