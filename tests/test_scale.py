"""Scale-out through the real command line: Optuna sweeps (failed trials, sqlite storage resumed after a
kill), joblib and submitit launchers, DDP on 2 CPU processes (one run directory, different batches per
rank, identical weights, 2 x b like 1 x 2b, exact resume, sweeps of DDP jobs), and the choice of
precision by device. A DDP relaunch inside pytest fails, so every run is a subprocess."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO, write_lerobot_dataset

pytestmark = pytest.mark.slow

TINY = ["model=tiny", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1", "logger=csv"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_lerobot_dataset(tmp_path_factory.mktemp("scale") / "ds", episodes=4, frames=16)


def train_py(cwd: Path, *args: str, timeout: int = 600, **popen) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "ACTLAB_DATA_DIR": str(cwd / "data")}
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout, **popen,
    )  # fmt: skip


def sweep_dir(cwd: Path) -> Path:
    (found,) = list(cwd.glob("multirun/*/*"))
    return found


# ----------------------------------------------------------------------------------------------- sweeps
def test_optuna_sweep_survives_failed_trials_and_writes_its_summary(tmp_path, dataset):
    # chunk_size 5 < n_action_steps 10 is refused: those trials fail, one line each, and the sweep goes on.
    done = train_py(
        tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=4", f"dataset.root={dataset}", *TINY,
        "trainer.max_steps=2", "trainer.val_check_interval=2", "model.chunk_size=choice(5,20)",
        "model.n_action_steps=10",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = sweep_dir(tmp_path)
    results = (sweep / "optimization_results.yaml").read_text()
    assert "best_params:" in results and "model.chunk_size: 20" in results and "best_value:" in results
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0", "1", "2", "3"]
    failed = [j for j in jobs if not (sweep / j / "checkpoints" / "final").is_dir()]
    assert failed, "the seeded sampler drew chunk_size=5 at least once"
    for job in failed:
        assert "exceeds model.chunk_size=5" in (sweep / job / "train.log").read_text()
    output = done.stdout + done.stderr
    assert output.count("Failed experiment: model.n_action_steps=10 exceeds") == len(failed)
    assert "Traceback" not in output


def test_optuna_study_in_sqlite_resumes_after_the_sweep_is_killed(tmp_path, dataset):
    import optuna

    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = ["hparams_search=optuna", f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=resume",
            f"dataset.root={dataset}", *TINY, "trainer.max_steps=2", "trainer.val_check_interval=2"]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    first = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *args, "hydra.sweeper.n_trials=6"], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300

    def trials() -> int:  # the study's trials so far (its tables exist once the sweep has started)
        try:
            return len(optuna.load_study(study_name="resume", storage=storage).trials)
        except Exception:  # noqa: BLE001 - not created yet
            return 0

    # trial 1 done and trial 2 started: kill during trial 2 (not between two trials)
    while not (list(tmp_path.glob("multirun/*/*/1/checkpoints/final")) and trials() >= 3):
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    done = train_py(tmp_path, *args, "hydra.sweeper.n_trials=2")
    assert done.returncode == 0, done.stderr[-3000:]
    states = [t.state.name for t in optuna.load_study(study_name="resume", storage=storage).trials]
    assert states.count("COMPLETE") >= 4  # 2 before the kill, 2 after; the killed trial stays RUNNING
    assert len(states) >= 5


def test_a_failed_job_of_a_grid_sweep_is_reported_and_the_others_run(tmp_path, dataset):
    done = train_py(tmp_path, "-m", f"dataset.root={dataset}", *TINY, "trainer.max_steps=2",
                    "model.n_action_steps=30,5")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "error: job 0 (" in done.stderr and "model.n_action_steps=30 exceeds model.chunk_size=20" in done.stderr
    assert (sweep_dir(tmp_path) / "1" / "checkpoints" / "final").is_dir()


@pytest.mark.parametrize("launcher,jobs", [("joblib", 2), ("submitit_local", 4)])
def test_launchers_run_every_job_of_a_sweep(tmp_path, dataset, launcher, jobs):
    seeds = ",".join(str(s) for s in range(1, jobs + 1))
    # One log folder for all jobs: with the default `.submitit/%j`, submitit's local controller can open its
    # log before the submitting process has created that job's folder (seen once under load).
    local = ["hydra.launcher.timeout_min=10", "hydra.launcher.cpus_per_task=1",
             "hydra.launcher.submitit_folder=${hydra.sweep.dir}/.submitit"]  # fmt: skip
    extra = local if launcher == "submitit_local" else []
    done = train_py(tmp_path, "-m", f"hydra/launcher={launcher}", *extra, f"dataset.root={dataset}", *TINY,
                    "trainer.max_steps=2", f"seed={seeds}")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = sweep_dir(tmp_path)
    finals = sorted(p.parent.parent.name for p in sweep.glob("*/checkpoints/final"))
    assert finals == [str(i) for i in range(jobs)]
    seeds_used = sorted(json.loads((sweep / j / "checkpoints" / "final" / "hyperparameters.json").read_text())["seed"]
                        for j in finals)  # fmt: skip
    assert seeds_used == list(range(1, jobs + 1))


# ----------------------------------------------------------------------------------------------- DDP
def ddp_run(cwd: Path, dataset: Path, *extra: str, steps: int = 4) -> subprocess.CompletedProcess:
    return train_py(
        cwd, f"dataset.root={dataset}", *TINY, f"trainer.max_steps={steps}", "dataset.batch_size=4",
        "checkpoint.save_freq=2", "trainer.val_check_interval=2", *extra,
    )  # fmt: skip


def test_ddp_on_two_cpu_processes_writes_one_run_and_keeps_ranks_in_step(tmp_path, dataset):
    run = tmp_path / "run"
    done = ddp_run(tmp_path, dataset, "hardware=ddp_cpu", f"hydra.run.dir={run}",
                   "+callbacks.weights._target_=tests.ddp_helpers.WeightFingerprint",
                   f"+callbacks.weights.folder={tmp_path}/weights",
                   "+callbacks.batches._target_=tests.ddp_helpers.BatchRecorder",
                   f"+callbacks.batches.folder={tmp_path}/batches")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batches", "run", "weights"]  # one run directory
    assert not (tmp_path / "outputs").exists()
    fingerprints = {(tmp_path / "weights" / f"rank{r}.txt").read_text() for r in (0, 1)}
    assert len(fingerprints) == 1  # identical weights on both ranks
    zero, one = (torch.load(tmp_path / "batches" / f"rank{r}.pt") for r in (0, 1))
    assert len(zero) == len(one) == 4
    for a, b in zip(zero, one, strict=True):  # no frame of rank 0's batch is in rank 1's at the same step
        assert not (a[:, None, :] == b[None, :, :]).all(-1).any()
    with open(run / "csv" / "metrics.csv") as f:
        samples = [float(row["train/samples"]) for row in csv.DictReader(f) if row.get("train/samples")]
    assert samples[-1] == 4 * 4 * 2  # steps x batch x ranks
    assert sum("Step 4/4" in line for line in (run / "train.log").read_text().splitlines()) == 1  # rank 0 speaks


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "checkpoints" / "final" / "model.safetensors")


def test_two_ranks_of_batch_b_train_like_one_process_of_batch_2b(tmp_path, dataset):
    deterministic = ["model.dropout=0", "model.use_vae=false", "dataset.val_split=0"]
    ddp = ddp_run(tmp_path, dataset, "hardware=ddp_cpu", *deterministic, f"hydra.run.dir={tmp_path}/ddp")
    single = ddp_run(tmp_path, dataset, "hardware=cpu", "trainer.precision=32-true", *deterministic,
                     "dataset.batch_size=8", f"hydra.run.dir={tmp_path}/single")  # fmt: skip
    assert ddp.returncode == 0 and single.returncode == 0, (ddp.stderr + single.stderr)[-3000:]
    a, b = final_weights(tmp_path / "ddp"), final_weights(tmp_path / "single")
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-4, worst  # the same frames, gradients averaged over ranks


def test_resume_under_ddp_matches_an_uninterrupted_ddp_run(tmp_path, dataset):
    common = ["hardware=ddp_cpu", "dataset.val_split=0"]
    straight = ddp_run(tmp_path, dataset, *common, f"hydra.run.dir={tmp_path}/straight", steps=4)
    first = ddp_run(tmp_path, dataset, *common, f"hydra.run.dir={tmp_path}/resumed", steps=2)
    resumed = ddp_run(tmp_path, dataset, *common, f"resume={tmp_path}/resumed", steps=4)
    for done in (straight, first, resumed):
        assert done.returncode == 0, done.stderr[-3000:]
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_sweep_of_ddp_jobs_writes_one_sweep_directory(tmp_path, dataset):
    done = train_py(tmp_path, "-m", "hardware=ddp_cpu", f"dataset.root={dataset}", *TINY, "trainer.max_steps=2",
                    "dataset.batch_size=4", "seed=1,2")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert [p.name for p in tmp_path.glob("multirun/*")] and len(list(tmp_path.glob("multirun/*/*"))) == 1
    assert sorted(p.parent.parent.name for p in sweep_dir(tmp_path).glob("*/checkpoints/final")) == ["0", "1"]
    assert not (tmp_path / "outputs").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_multi_gpu_trains_with_every_visible_gpu(tmp_path, dataset):
    done = train_py(tmp_path, "hardware=multi_gpu", f"dataset.root={dataset}", *TINY, "trainer.max_steps=2",
                    "dataset.num_workers=0", f"hydra.run.dir={tmp_path}/run")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "final").is_dir()


@pytest.mark.parametrize("storage", ["memory", "sqlite"])
def test_a_sweep_in_which_every_trial_fails_ends_with_one_line(tmp_path, dataset, storage):
    extra = [f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db"] if storage == "sqlite" else []
    done = train_py(tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=2", f"dataset.root={dataset}", *TINY,
                    "trainer.max_steps=2", "trainer.val_check_interval=5", *extra)  # fmt: skip
    assert done.returncode == 2
    output = done.stdout + done.stderr
    assert output.count("Failed experiment: optimized_metric=val/loss but trainer.val_check_interval=5") == 2
    assert "error: no trial of the sweep completed; each one's error is above" in output
    assert "Traceback" not in output
