"""Training stops with one line at the first non-finite loss, naming the step and the term; exit status 2;
the run directory keeps its log with that line (and the checkpoints saved before it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FAST, REPO, write_lerobot_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_lerobot_dataset(tmp_path_factory.mktemp("data") / "state", episodes=3, frames=12, env_state_dim=None)


@pytest.mark.parametrize("step,key", [(0, "action"), (3, "observation.state")])
def test_a_nan_loss_stops_training_with_one_line(dataset, tmp_path, step, key):
    run = tmp_path / "run"
    args = [
        "model=tiny", "encoder.pretrained=null", f"dataset.root={dataset}", "dataset.batch_size=2",
        "trainer.max_steps=8", "checkpoint.save_freq=2", *FAST, f"hydra.run.dir={run}",
        "+callbacks.poison._target_=tests.poison.PoisonBatch", f"+callbacks.poison.step={step}",
        f"+callbacks.poison.key={key}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: training stopped at step {step}: the loss term '"), last
    assert "Traceback" not in done.stderr
    assert "is not finite (" in last and "check the data for NaN/inf" in last
    assert last in (run / "train.log").read_text()
    checkpoints = sorted(p.name for p in (run / "checkpoints").glob("step_*")) if step else []
    assert checkpoints == (["step_2"] if step else [])
    assert not (run / "checkpoints" / "final").exists()
