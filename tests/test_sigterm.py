"""Preemption (issue 18, section 6): a training run stopped with SIGTERM (what SLURM and Kubernetes send before
a kill) saves checkpoints/last/ at the end of the step in progress, says how to resume, exits 130 as for a
Ctrl-C, and `resume=<run dir>` continues from that step."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import write_image_dataset
from tests.terminate import signal_at_line

REPO = Path(__file__).resolve().parents[1]
ARGS = [
    "model=tiny",
    "env=none",
    "dataset.batch_size=8",
    "trainer.max_steps=60",
    "checkpoint.save_freq=1000",  # no checkpoint before the SIGTERM
    "trainer.log_every_n_steps=2",
    "trainer.val_check_interval=1000",
    "trainer.enable_progress_bar=false",
    "logger=csv",
]
# The run waits at the end of step 2 until the signal has arrived (a resumed run starts after it).
WAIT = ["+callbacks.wait._target_=tests.terminate.WaitForSignalAt", "+callbacks.wait.step=2"]


def train(data: Path, where: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), f"dataset.root={data}", *ARGS, *WAIT, where],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


@pytest.mark.slow
def test_sigterm_saves_last_says_how_to_resume_and_exits_130(tmp_path):
    data = write_image_dataset(tmp_path / "data", cameras=(), episodes=4, frames=30)
    run_dir = tmp_path / "run"
    process = train(data, f"hydra.run.dir={run_dir}", tmp_path)
    text = signal_at_line(process, "Step 2/60")  # training has taken its first steps
    assert process.returncode == 130, text[-3000:]
    assert (run_dir / "checkpoints" / "last").is_dir() and not list((run_dir / "checkpoints").glob("step_*")), text
    assert "SIGTERM: saved checkpoints/last/ at step" in text and f"continue with resume={run_dir}" in text
    assert "Traceback" not in text
    stopped = int(text.split("SIGTERM: saved checkpoints/last/ at step ")[1].split(";")[0])
    assert 2 <= stopped < 60

    resumed = train(data, f"resume={run_dir}", tmp_path)
    text = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, text[-3000:]
    assert f"Step {stopped + 2 - stopped % 2}/60" in text and "Step 2/60 " not in text  # from where it stopped
    assert (run_dir / "checkpoints" / "final").is_dir()


@pytest.mark.slow
def test_sigterm_during_validation_saves_last(tmp_path):
    data = write_image_dataset(tmp_path / "data", cameras=(), episodes=6, frames=30)
    run_dir = tmp_path / "run"
    args = [a for a in ARGS if not a.startswith("trainer.val_check_interval")]
    process = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), f"dataset.root={data}", *args, "trainer.val_check_interval=4",
         "dataset.val_split=0.34", "+callbacks.term._target_=tests.terminate.TerminateDuringValidation",
         "+callbacks.term.step=4", f"hydra.run.dir={run_dir}"],
        cwd=REPO, env={**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    text = process.communicate(timeout=600)[0]
    assert process.returncode == 130, text[-3000:]
    assert "SIGTERM: saved checkpoints/last/ at step 4" in text and f"continue with resume={run_dir}" in text
    assert "Traceback" not in text and (run_dir / "checkpoints" / "last").is_dir()


@pytest.mark.slow
def test_sigterm_before_training_exits_130_and_leaves_no_run_directory(tmp_path):
    data = write_image_dataset(tmp_path / "data", cameras=(), episodes=4, frames=30)
    run_dir = tmp_path / "run"
    process = train(data, f"hydra.run.dir={run_dir}", tmp_path)
    text = signal_at_line(process, "Reading the dataset")  # start-up: the training stack is not imported yet
    assert process.returncode == 130, text[-3000:]
    assert "interrupted" in text and "Traceback" not in text
    assert not run_dir.exists(), text
