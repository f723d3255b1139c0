"""Requeue under submitit (issue 18, section 6): the time-limit/preemption signal (USR2) makes training save
checkpoints/last/ at the end of the step, submitit requeues the job into the same run directory, and the
requeued job resumes from that step and finishes. Run with hydra/launcher=submitit_local, whose controller
restarts a requeued job as SLURM would; the test sends the signal that SLURM sends."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest

from bench.common import write_image_dataset
from tests.test_sigterm import ARGS, REPO, WAIT


def job_processes(parent: psutil.Process) -> list[psutil.Process]:
    found = []
    for child in parent.children(recursive=True):
        try:
            if "submitit.core._submit" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


@pytest.mark.slow
def test_usr2_saves_last_requeues_and_the_requeued_job_resumes(tmp_path):
    data = write_image_dataset(tmp_path / "data", cameras=(), episodes=4, frames=30)
    sweep = tmp_path / "multirun"
    args = [a for a in ARGS if not a.startswith("trainer.max_steps")] + ["trainer.max_steps=200"]
    # the job (run by submitit, not by train.py) imports tests.terminate from the checkout
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1", "PYTHONPATH": path}
    launcher = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), "-m", "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep}",
         # one log folder, as in test_scale: with `.submitit/%j` submitit's local controller can open its log
         # before the submitting process has created the job's folder (seen under load)
         "hydra.launcher.submitit_folder=${hydra.sweep.dir}/.submitit",
         f"dataset.root={data}", *args, *WAIT],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 600
    signalled = None
    while signalled is None and time.monotonic() < deadline and launcher.poll() is None:
        for log in sweep.glob(".submitit/*_log.out"):
            if re.search(r"Step \d+/200", log.read_text(errors="replace")):
                jobs = job_processes(psutil.Process(launcher.pid))
                assert jobs, "no submitit job process found"
                jobs[0].send_signal(signal.SIGUSR2)
                signalled = jobs[0].pid
        time.sleep(0.2)
    if signalled is None:
        launcher.kill()
        logs = "".join(p.read_text(errors="replace") for p in sorted(sweep.glob(".submitit/*_log.*")))
        pytest.fail(f"training never reached step 2:\n{launcher.communicate()[0][-3000:]}\n{logs[-3000:]}")
    output = launcher.communicate(timeout=600)[0]
    logs = "".join(p.read_text(errors="replace") for p in sorted(sweep.glob(".submitit/*_log.*")))
    assert launcher.returncode == 0, output[-3000:] + logs[-3000:]

    run_dir = sweep / "0"
    assert (run_dir / "checkpoints" / "final").is_dir()
    saved = re.search(r"Saved checkpoints/last/ at step (\d+); requeueing", logs)
    assert saved, logs[-3000:]
    stopped = int(saved.group(1))
    assert 2 <= stopped < 200
    assert f"Requeued job: resuming from {run_dir / 'checkpoints' / 'last'}" in logs
    assert "Traceback" not in logs
    after = logs.split("Requeued job: resuming from")[1]
    assert "Step 2/200 " not in after and f"Step {stopped + 2 - stopped % 2}/200" in after  # from where it stopped
