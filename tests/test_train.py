"""Training runs through `train(cfg)` on the real configs: every model preset, image and state-only data,
checkpoints, resume, loggers, and the bad inputs that must stop a run before it writes a checkpoint."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from actlab.errors import ActlabError
from actlab.policy import ACTPolicy
from actlab.training.train import train
from tests.conftest import FAST, G1_CAMERAS, compose_train, run_cli, write_g1_like_dataset, write_lerobot_dataset

CHECKPOINT_FILES = ["config.json", "hyperparameters.json", "model.safetensors", "training_state.pt"]


def run(tmp_path: Path, root: Path, *overrides: str, steps: int = 2) -> Path:
    cfg = compose_train(
        [
            f"dataset.root={root}",
            "encoder.pretrained=null",
            "dataset.batch_size=2",
            f"trainer.max_steps={steps}",
            "checkpoint.save_freq=2",
            *FAST,
            *overrides,
        ],
        tmp_path,
    )
    train(cfg)
    return Path(cfg.paths.output_dir)


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_folders_saved_at_the_same_step_store_their_identical_files_once(tmp_path, state_dataset):
    ckpts = run(tmp_path, state_dataset, "model=tiny") / "checkpoints"  # step_2, last, best, final: all at step 2
    weights = [ckpts / name / "model.safetensors" for name in ("step_2", "last", "best", "final")]
    assert len({w.stat().st_ino for w in weights}) == 1 and weights[0].stat().st_nlink == 4
    # the training state after fit differs from best's (loop counters, best score), last's and final's do not
    assert (ckpts / "last" / "training_state.pt").samefile(ckpts / "final" / "training_state.pt")
    assert not (ckpts / "best" / "training_state.pt").samefile(ckpts / "final" / "training_state.pt")
    for name in ("step_2", "last", "best", "final"):
        state = torch.load(ckpts / name / "training_state.pt", weights_only=True)
        assert state["global_step"] == 2


def test_a_file_is_linked_only_to_exactly_the_same_bytes(tmp_path):
    from actlab.training.checkpoint_io import share_identical_files

    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        (folder / "same").write_bytes(b"x" * 100)
    (a / "other").write_bytes(b"x" * 100)
    (b / "other").write_bytes(b"x" * 99 + b"y")  # same size, other bytes
    (b / "only_here").write_bytes(b"x" * 100)
    share_identical_files(b, a)
    assert (b / "same").samefile(a / "same")
    assert not (b / "other").samefile(a / "other") and (b / "other").read_bytes() == b"x" * 99 + b"y"
    assert (b / "only_here").stat().st_nlink == 1
    assert sorted(p.name for p in b.iterdir()) == ["only_here", "other", "same"]  # no link left behind


@pytest.mark.parametrize("model", ["tiny", "baseline", "large", "custom"])
def test_two_steps_per_model_preset_on_a_video_dataset(tmp_path, video_dataset, model):
    run_dir = run(tmp_path, video_dataset, f"model={model}")
    ckpts = run_dir / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best", "final", "last", "step_2"]
    for name in ("best", "final", "last", "step_2"):
        assert sorted(p.name for p in (ckpts / name).iterdir()) == CHECKPOINT_FILES
    hparams = json.loads((ckpts / "final" / "hyperparameters.json").read_text())
    assert hparams["model"]["name"] == model and hparams["dataset"]["root"] == str(video_dataset)
    rows = read_metrics(run_dir)
    logged = {k for row in rows for k, v in row.items() if v}
    assert {
        "train/loss",
        "train/l1_loss",
        "train/kld_loss",
        "train/grad_norm",
        "lr",
        "train/update_s",
        "train/dataloading_s",
        "train/samples",
        "train/epochs",
        "train/episodes",
        "val/loss",
    } <= logged
    assert (run_dir / "checkpoints" / "best").is_dir()


@pytest.mark.slow
def test_g1_preset_reads_dimensions_and_cameras_from_info_json(tmp_path):
    root = write_g1_like_dataset(tmp_path / "g1")
    run_dir = run(tmp_path, root, "model=large", "dataset=g1", steps=1)
    policy = ACTPolicy.from_pretrained(run_dir / "checkpoints" / "final")
    assert list(policy.config.image_features) == [f"observation.images.{c}" for c in G1_CAMERAS]
    assert policy.config.robot_state_feature.shape == policy.config.action_feature.shape == (28,)
    assert policy.config.dim_model == 1024


@pytest.mark.parametrize("fmt", ["npy", "real_lift", "lerobot_v2"])
def test_two_steps_per_dataset_format(tmp_path, fmt):
    from tests.formats import bimanual_frames, write_lerobot_v2, write_npy

    if fmt == "npy":
        root, overrides = write_npy(tmp_path / "npy", "folder", [6, 7], bimanual_frames([6, 7])), ["dataset=npy"]
    else:
        root, _ = write_lerobot_v2(tmp_path / "v21", [6, 7], "v2.1", {"top": "video"}, action_dim=6)
        overrides = ["experiment=real_lift"] if fmt == "real_lift" else ["dataset=lerobot"]
    run_dir = run(tmp_path, root, *overrides, "model.chunk_size=8", "model.n_action_steps=8")
    policy = ACTPolicy.from_pretrained(run_dir / "checkpoints" / "final")
    assert len(policy.config.image_features) == (2 if fmt == "npy" else 1)


@pytest.mark.parametrize("fixture", ["state_dataset", "png_dataset"])
def test_two_steps_on_state_only_and_png_datasets(tmp_path, request, fixture):
    run_dir = run(tmp_path, request.getfixturevalue(fixture), "model=tiny")
    policy = ACTPolicy.from_pretrained(run_dir / "checkpoints" / "final")
    assert policy.config.image_features == {} if fixture == "state_dataset" else len(policy.config.image_features) == 1


def test_checkpoint_alone_rebuilds_the_policy_with_identical_actions(tmp_path, video_dataset):
    run_dir = run(tmp_path, video_dataset, "model=tiny")
    final = run_dir / "checkpoints" / "final"
    policy = ACTPolicy.from_pretrained(final)
    weights = load_file(final / "model.safetensors")
    assert all(torch.equal(weights[k], v) for k, v in policy.state_dict().items())
    g = torch.Generator().manual_seed(0)
    obs = {k: torch.rand(2, *f.shape, generator=g) for k, f in policy.config.input_features.items()}
    again = ACTPolicy.from_pretrained(run_dir / "checkpoints" / "last")
    assert torch.equal(policy.predict_action_chunk(obs), again.predict_action_chunk(obs))
    state = torch.load(final / "training_state.pt", weights_only=True)
    assert state["global_step"] == 2 and state["optimizer_states"] and state["lr_schedulers"]


def test_resume_continues_the_step_count_and_matches_an_uninterrupted_run(tmp_path, state_dataset):
    # 60 frames, batch 30, no validation split: checkpoints at step 2 fall on an epoch boundary.
    common = ["model=tiny", "dataset.val_split=0", "dataset.batch_size=30", "checkpoint.save_freq=2"]
    straight = run(tmp_path / "a", state_dataset, *common, steps=4)
    interrupted = run(tmp_path / "b", state_dataset, *common, steps=2)
    resumed = run(tmp_path / "b", state_dataset, *common, f"resume={interrupted}", steps=4)
    assert resumed == interrupted  # continues in the same run directory
    state = torch.load(resumed / "checkpoints" / "last" / "training_state.pt", weights_only=True)
    assert state["global_step"] == 4
    # no validation split and no simulator: there is no "best" to keep
    assert sorted(p.name for p in (resumed / "checkpoints").iterdir()) == ["final", "last", "step_2", "step_4"]
    a = load_file(straight / "checkpoints" / "final" / "model.safetensors")
    b = load_file(resumed / "checkpoints" / "final" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)  # optimiser, schedule and RNG were restored
    # The resumed run appended to the interrupted run's metrics (Lightning's logging step skips one on
    # resume from a checkpoint saved at a train-batch end: 0, 1, 3, 4).
    steps = [int(r["step"]) for r in read_metrics(resumed) if r.get("train/loss")]
    assert len(steps) == 4 and steps[:2] == [0, 1] and steps == sorted(steps)


def test_resume_without_a_checkpoint_fails(tmp_path, state_dataset):
    with pytest.raises(ActlabError, match="resume=.*: no checkpoint at"):
        run(tmp_path, state_dataset, f"resume={tmp_path / 'nothing'}")


def test_resume_with_another_architecture_fails(tmp_path, state_dataset):
    first = run(tmp_path, state_dataset, "model=tiny")
    with pytest.raises(ActlabError, match="model.dim_model is 64 but the run being resumed had 128"):
        run(tmp_path, state_dataset, "model=tiny", "model.dim_model=64", f"resume={first}")


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["dataset.root=/does/not/exist"], "dataset.root=/does/not/exist does not exist"),
        (["dataset.cameras=[top]"], "dataset.cameras: 'top' is not in"),
        (["model.dim_model=100", "model.n_heads=8"], "model.dim_model=100 is not divisible by model.n_heads=8"),
        (["model.n_action_steps=30"], "model.n_action_steps=30 exceeds model.chunk_size=20"),
        (["dataset=g1", "dataset.root=null"], "dataset=g1: no dataset.root given and the hub dataset"),
    ],
)
def test_bad_input_stops_before_training(tmp_path, video_dataset, overrides, message):
    with pytest.raises(ActlabError, match=message):
        run(tmp_path, video_dataset, "model=tiny", *overrides)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_dataset_without_action_stops_before_training(tmp_path):
    root = write_lerobot_dataset(tmp_path / "ds", episodes=1, frames=4)
    info = root / "meta" / "info.json"
    info.write_text(info.read_text().replace('"action"', '"act"'))
    with pytest.raises(ActlabError, match="no 'action' feature"):
        run(tmp_path, root, "model=tiny")


@pytest.mark.slow
@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["dataset.root=/does/not/exist"],
            "dataset.root=/does/not/exist does not exist; expected a LeRobot dataset folder",
        ),
        (["resume=nowhere"], "resume=nowhere: no checkpoint at nowhere/checkpoints/last; expected a run directory"),
    ],
)
def test_cli_prints_one_line_and_exits_2_on_bad_input(tmp_path, args, message):
    result = run_cli(["model=tiny", *args], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {message}")
    assert "Traceback" not in result.stderr + result.stdout
    assert not list(tmp_path.glob("outputs/*/*/checkpoints"))
    assert not (tmp_path / "nowhere").exists()  # a bad resume path is not created as a run directory


def wandb_history_keys(run_file: Path) -> set[str]:
    """Metric names in an offline wandb run file, read with wandb's own record reader."""
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal.datastore import DataStore

    store, keys = DataStore(), set()
    store.open_for_scan(str(run_file))
    while (data := store.scan_data()) is not None:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") == "history":
            keys |= {item.key or "/".join(item.nested_key) for item in record.history.item}
    return keys


@pytest.mark.slow
def test_wandb_offline_writes_a_run_folder_with_the_metrics(tmp_path, state_dataset):
    run_dir = run(tmp_path, state_dataset, "model=tiny", "logger=wandb")
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    keys = wandb_history_keys(next(runs[0].glob("run-*.wandb")))
    assert {"train/loss", "train/l1_loss", "train/kld_loss", "lr", "train/update_s", "val/loss"} <= keys


def test_tensorboard_logger_writes_events(tmp_path, state_dataset):
    run_dir = run(tmp_path, state_dataset, "model=tiny", "logger=tensorboard")
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_multirun_runs_two_jobs_under_multirun(tmp_path, video_dataset):
    result = run_cli(
        [
            "-m",
            "model=baseline,large",
            f"dataset.root={video_dataset}",
            "encoder.pretrained=null",
            "dataset.batch_size=2",
            "trainer.max_steps=1",
            "checkpoint.save_freq=0",
            *FAST,
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(tmp_path.glob("multirun/*/*_train/[01]"))
    assert [j.name for j in jobs] == ["0", "1"]
    models = [
        json.loads((j / "checkpoints" / "final" / "hyperparameters.json").read_text())["model"]["name"] for j in jobs
    ]
    assert models == ["baseline", "large"]


def test_dataset_with_only_robot_state_and_action_trains(tmp_path):
    root = write_lerobot_dataset(tmp_path / "ds", episodes=2, frames=6, env_state_dim=None)
    policy = ACTPolicy.from_pretrained(run(tmp_path, root, "model=tiny") / "checkpoints" / "final")
    assert list(policy.config.input_features) == ["observation.state"]


class RecordingEnv:
    """Stands in for a simulator: only records that it was closed."""

    fps = 10.0

    def __init__(self, features):
        self.features = features
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_ctrl_c_during_training_closes_the_simulator_and_the_loggers(tmp_path, state_dataset, monkeypatch):
    import wandb

    from actlab.features import PolicyFeature
    from actlab.training.module import ACTLightningModule

    env = RecordingEnv(
        {
            "observation.state": PolicyFeature("STATE", (6,)),
            "observation.environment_state": PolicyFeature("ENV", (4,)),
            "action": PolicyFeature("ACTION", (5,)),
        }
    )
    monkeypatch.setattr("actlab.training.train.make_env", lambda cfg, video=False: env)
    step = ACTLightningModule.training_step

    def interrupted_at_step_3(self, batch, batch_idx):
        if self.global_step == 3:
            raise KeyboardInterrupt
        return step(self, batch, batch_idx)

    monkeypatch.setattr(ACTLightningModule, "training_step", interrupted_at_step_3)
    with pytest.raises(KeyboardInterrupt):  # what a Ctrl-C raises anywhere else (a notebook survives it)
        run(tmp_path, state_dataset, "model=tiny", "logger=wandb", "env.eval_freq=0", steps=10)
    assert env.closed
    assert wandb.run is None  # the wandb run was finished, not left open
    run_dir = tmp_path / "run"
    assert (run_dir / "checkpoints" / "step_2").is_dir() and not (run_dir / "checkpoints" / "final").exists()


@pytest.mark.slow
def test_ctrl_c_on_the_command_line_exits_130_and_says_how_to_continue(tmp_path, state_dataset):
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    args = [f"dataset.root={state_dataset}", "model=tiny", "dataset.batch_size=2", "trainer.max_steps=100000"]
    args += ["checkpoint.save_freq=2", "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path}/run"]
    # As from a terminal: a shell starts background jobs (`make test &`, nohup) with SIGINT ignored, and
    # Python then never turns it into KeyboardInterrupt.
    process = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    while not (tmp_path / "run" / "checkpoints" / "last").is_dir():
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1] == f"interrupted; continue with resume={tmp_path}/run"
    assert "Traceback" not in stderr
    assert (
        (tmp_path / "run" / "train.log")
        .read_text()
        .strip()
        .endswith(f"interrupted; continue with resume={tmp_path}/run")
    )
