"""`python train.py resume=<run dir>` alone continues the run with its own settings (issue 23, item 1): the
command line becomes the run's saved overrides with this command's on top; only RESUMABLE_KEYS may change,
and every other difference is listed in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from safetensors.torch import load_file

from actlab.config.resume_overrides import resume_overrides
from actlab.errors import ActlabError
from bench.common import write_image_dataset
from tests.terminate import signal_at_line

REPO = Path(__file__).resolve().parents[1]
SAVED = ["model=tiny", "model.chunk_size=5", "dataset.root=/data/x", "env=none", "+callbacks.a._target_=x.Y"]


def run_dir(tmp_path: Path, overrides: list[str] = SAVED) -> Path:
    (tmp_path / "run" / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), tmp_path / "run" / ".hydra" / "overrides.yaml")
    return tmp_path / "run"


def test_resume_alone_takes_the_runs_own_overrides(tmp_path):
    run = run_dir(tmp_path)
    assert resume_overrides([f"resume={run}"]) == [*SAVED, f"resume={run}"]
    assert resume_overrides(["--cfg", "job", f"resume={run}"]) == ["--cfg", "job", *SAVED, f"resume={run}"]


def test_allowed_and_repeated_overrides_apply_on_top(tmp_path):
    run = run_dir(tmp_path)
    merged = resume_overrides([f"resume={run}", "trainer.max_steps=20", "model.chunk_size=5", "model=tiny"])
    assert merged == [*SAVED, "trainer.max_steps=20", f"resume={run}"]
    merged = resume_overrides([f"resume={run}", "+callbacks.a._target_=x.Y", "checkpoint.save_freq=3"])
    assert merged == [*SAVED, "checkpoint.save_freq=3", f"resume={run}"]  # `+key` given again: not doubled
    # a value the run already had by default changes nothing: allowed
    assert resume_overrides([f"resume={run}", "model.dim_model=128"])[-2:] == ["model.dim_model=128", f"resume={run}"]


def test_every_disallowed_difference_is_listed_in_one_line(tmp_path):
    run = run_dir(tmp_path)
    with pytest.raises(ActlabError) as e:
        resume_overrides([f"resume={run}", "model.chunk_size=10", "dataset.batch_size=3", "trainer.max_steps=9"])
    message = str(e.value)
    assert "\n" not in message
    assert "model.chunk_size=10 (the run has 5)" in message and "dataset.batch_size=3 (the run has 64)" in message
    assert "trainer.max_steps=9" not in message.split("On resume only")[0]
    with pytest.raises(ActlabError, match=r"env=lift \(the run has env=none\)"):
        resume_overrides([f"resume={run}", "env=lift"])


def test_left_alone_without_a_saved_run_or_in_a_sweep(tmp_path):
    argv = [f"resume={tmp_path}/nowhere", "model.chunk_size=3"]
    assert resume_overrides(argv) == argv  # train reports the missing checkpoint
    assert resume_overrides(["model=tiny"]) == ["model=tiny"]
    run = run_dir(tmp_path)
    assert resume_overrides(["-m", f"resume={run}"]) == ["-m", f"resume={run}"]
    (run / ".hydra" / "overrides.yaml").write_text("{not: a list}")
    with pytest.raises(ActlabError, match="not a list of overrides"):
        resume_overrides([f"resume={run}"])


def test_interrupted_before_a_checkpoint_says_there_is_nothing_to_resume(tmp_path):
    from actlab.config.compose import compose_train
    from actlab.entry import interrupted_without_checkpoint

    cfg = compose_train(["model=tiny", "checkpoint.save_freq=50"], tmp_path)
    assert interrupted_without_checkpoint(cfg) == (
        "interrupted before the first checkpoint (checkpoints/last/ is written every checkpoint.save_freq=50 "
        "steps): nothing to resume; start again with: python train.py "
        f"paths.output_dir={tmp_path} model=tiny checkpoint.save_freq=50"
    )


# --- a real run, interrupted and resumed with `resume=<run dir>` alone ------------------------------------

ARGS = [
    "model=tiny",
    "model.chunk_size=7",  # not the defaults: resume=<dir> alone must find them
    "model.n_action_steps=3",
    "model.dim_model=32",
    "model.n_heads=2",
    "env=none",
    "dataset.batch_size=4",
    "trainer.max_steps=60",
    "checkpoint.save_freq=1000",
    "trainer.log_every_n_steps=2",
    "trainer.val_check_interval=1000",
    "trainer.enable_progress_bar=false",
    "logger=csv",
]


def train(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


@pytest.mark.slow
def test_resume_alone_continues_to_the_uninterrupted_weights(tmp_path):
    data = write_image_dataset(tmp_path / "data", cameras=(), episodes=4, frames=30)
    args = [f"dataset.root={data}", *ARGS]
    whole = train(*args, f"hydra.run.dir={tmp_path}/whole", cwd=tmp_path)
    text = whole.communicate(timeout=900)[0]
    assert whole.returncode == 0, text[-3000:]

    run = tmp_path / "interrupted"
    # the run waits at step 2 for the signal (a saved override: the resumed run starts after step 2)
    wait = ["+callbacks.wait._target_=tests.terminate.WaitForSignalAt", "+callbacks.wait.step=2"]
    process = train(*args, *wait, f"hydra.run.dir={run}", cwd=tmp_path)
    text = signal_at_line(process, "Step 2/60")
    assert process.returncode == 130, text[-3000:]
    assert (run / "checkpoints" / "last").is_dir(), text[-3000:]
    saved = (run / ".hydra" / "overrides.yaml").read_text()

    refused = train(
        f"resume={run}", "model.chunk_size=10", "dataset.batch_size=16", "trainer.max_steps=9", cwd=tmp_path
    )
    text = refused.communicate(timeout=600)[0]
    assert refused.returncode == 2, text[-3000:]
    error = text.strip().splitlines()[-1]
    assert error.startswith(f"error: resume={run} continues the run with its own settings"), text[-3000:]
    assert "model.chunk_size=10 (the run has 7)" in error and "dataset.batch_size=16 (the run has 4)" in error
    assert (run / ".hydra" / "overrides.yaml").read_text() == saved  # nothing written

    resumed = train(f"resume={run}", cwd=tmp_path)
    text = resumed.communicate(timeout=900)[0]
    assert resumed.returncode == 0, text[-3000:]
    assert "Step 60/60" in text and "Step 2/60 " not in text
    a = load_file(tmp_path / "whole" / "checkpoints" / "final" / "model.safetensors")
    b = load_file(run / "checkpoints" / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
