"""Kill and resume: SIGKILL a real `train.py` run at random moments, some of them inside a checkpoint save,
resume it with `resume=<run dir>` after each kill until it finishes, and compare its final weights with an
uninterrupted run's.

After every kill it checks that each folder under `checkpoints/` loads (`config.json`,
`model.safetensors`, `training_state.pt` with `weights_only=True`, and `ACTPolicy.from_pretrained`), that
`last/` exists once a checkpoint has been published, and that the temporary folders a kill leaves behind
are gone once the run has started again and finished.

    python -m bench kill_resume          # 20 kills (make bench-kill), about 4 minutes on 2 cores
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from bench.common import table, write_image_dataset

REPO = Path(__file__).resolve().parents[1]
TRAIN_ARGS = [
    "model=tiny",
    "env=none",
    "dataset.batch_size=8",
    "trainer.val_check_interval=50",
    "trainer.limit_val_batches=2",
    "trainer.log_every_n_steps=50",
    "trainer.enable_progress_bar=false",
    "logger=csv",
]


@dataclass
class KillReport:
    kills: int = 0
    kills_in_save: int = 0  # a checkpoint folder was being written when the process died
    launches: int = 0
    checks: int = 0  # checkpoint folders checked after kills
    unreadable: list[str] = field(default_factory=list)
    last_missing: int = 0  # kills after which last/ was absent although a checkpoint had been published
    resume_failures: list[str] = field(default_factory=list)
    leftovers_after_kills: int = 0  # .tmp-/.old- entries found right after a kill
    leftovers_not_cleaned: list[str] = field(default_factory=list)  # ... still there when the run has finished
    identical: bool | None = None
    seconds: float = 0.0


def launch(run_dir: Path, data: Path, max_steps: int, save_freq: int) -> subprocess.Popen:
    """`python train.py ...`, resuming `run_dir` when it has a checkpoint, else starting there afresh."""
    has_last = (run_dir / "checkpoints" / "last").is_dir()
    where = f"resume={run_dir}" if has_last else f"hydra.run.dir={run_dir}"
    args = [f"dataset.root={data}", *TRAIN_ARGS, f"trainer.max_steps={max_steps}", f"checkpoint.save_freq={save_freq}"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *args, where],
        cwd=run_dir.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def hidden_entries(checkpoints: Path) -> set[str]:
    try:
        return {name for name in os.listdir(checkpoints) if ".tmp-" in name or ".old-" in name}
    except FileNotFoundError:
        return set()


def published_steps(checkpoints: Path) -> set[str]:
    try:
        return {name for name in os.listdir(checkpoints) if name.startswith("step_")}
    except FileNotFoundError:
        return set()


def wait_and_kill(process: subprocess.Popen, checkpoints: Path, mode: str, rng: random.Random, horizon: float) -> bool:
    """Kills `process` at a random time within `horizon` seconds (mode "random") or 0-20 ms into its n-th
    checkpoint save, n random in 1..7 (mode "save"); returns whether it was still running when killed.

    A save the 0.5 ms poll never saw in progress (a loaded machine) is still counted once its `step_N/`
    appears, and a random kill comes at the latest right after the launch's 7th save, so every kill lands
    while the run has 7 saves left, however fast it goes."""
    deadline = time.monotonic() + rng.uniform(0.0, horizon)
    saves_to_skip, saving = rng.randint(0, 6), False
    at_launch = counted = published_steps(checkpoints)
    while process.poll() is None:
        if mode == "random" and (time.monotonic() >= deadline or len(published_steps(checkpoints) - at_launch) >= 7):
            break
        if mode == "save":
            now_saving = any(".tmp-" in name for name in hidden_entries(checkpoints))
            steps = published_steps(checkpoints)
            started = now_saving and not saving
            missed = not now_saving and not saving and bool(steps - counted)  # written between two polls
            if started or missed:
                if saves_to_skip == 0:
                    if started:
                        time.sleep(rng.uniform(0.0, 0.02))
                    break
                saves_to_skip -= 1
            if not now_saving:
                counted = steps
            saving = now_saving
        time.sleep(0.0005)
    if process.poll() is not None:
        return False
    process.send_signal(signal.SIGKILL)
    process.wait()
    return True


def check_checkpoints(checkpoints: Path) -> list[str]:
    """Every visible checkpoint folder loads; returns the problems found."""
    from actlab.config.policy import ACTPolicyConfig
    from actlab.policy import ACTPolicy

    problems = []
    for folder in sorted(p for p in checkpoints.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            ACTPolicyConfig.load(folder / "config.json")
            load_file(folder / "model.safetensors")
            torch.load(folder / "training_state.pt", weights_only=True)
            ACTPolicy.from_pretrained(folder)
        except Exception as e:  # noqa: BLE001 - any failure is a finding
            problems.append(f"{folder.name}: {type(e).__name__}: {e}")
    return problems


def kill_and_resume(workdir: Path, kills: int, max_steps: int, save_freq: int, seed: int = 0) -> KillReport:
    """Runs the experiment in `workdir` and returns its figures."""
    rng = random.Random(seed)
    data = write_image_dataset(workdir / "data", cameras=(), episodes=8, frames=50)
    started = time.monotonic()
    reference = workdir / "uninterrupted"
    process = launch(reference, data, max_steps, save_freq)
    while process.poll() is None and not any((reference / "checkpoints").glob("step_*")):
        time.sleep(0.01)
    # Random kills fall within twice the time to the first checkpoint: half in start-up, half in training.
    horizon = 2 * (time.monotonic() - started)
    _, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the uninterrupted run failed: {stderr[-2000:]}")

    report = KillReport()
    run_dir = workdir / "killed"
    checkpoints = run_dir / "checkpoints"
    published, leftovers_seen = False, set()
    while True:
        process = launch(run_dir, data, max_steps, save_freq)
        report.launches += 1
        if report.kills < kills:
            mode = "save" if report.kills % 2 else "random"
            killed = wait_and_kill(process, checkpoints, mode, rng, horizon)
        else:
            killed = False
        if not killed:
            _, stderr = process.communicate()
            if process.returncode != 0:
                report.resume_failures.append(stderr.strip().splitlines()[-1] if stderr.strip() else "no output")
                if len(report.resume_failures) > 3:
                    break
                continue
            # Whatever the kills left behind must be gone once a run has started and finished.
            report.leftovers_not_cleaned += sorted(leftovers_seen & hidden_entries(checkpoints))
            break
        report.kills += 1
        new_leftovers = hidden_entries(checkpoints) - leftovers_seen
        report.kills_in_save += any(".tmp-" in name for name in new_leftovers)
        report.leftovers_after_kills += len(new_leftovers)
        leftovers_seen |= new_leftovers
        if checkpoints.is_dir():
            folders = [p for p in checkpoints.iterdir() if not p.name.startswith(".")]
            published = published or bool(folders)
            report.checks += len(folders)
            report.unreadable += check_checkpoints(checkpoints)
            report.last_missing += published and not (checkpoints / "last").is_dir()
    report.seconds = time.monotonic() - started

    final = checkpoints / "final" / "model.safetensors"
    if final.is_file():
        a, b = load_file(reference / "checkpoints" / "final" / "model.safetensors"), load_file(final)
        report.identical = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return report


def main(kills: int = 20, max_steps: int = 1000, save_freq: int = 10) -> KillReport:
    workdir = Path(tempfile.mkdtemp(prefix="actlab-kill-"))
    try:
        report = kill_and_resume(workdir, kills, max_steps, save_freq)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows = [
        ["SIGKILLs", report.kills],
        ["... while a checkpoint folder was being written", report.kills_in_save],
        ["launches (first run + resumes)", report.launches],
        ["checkpoint folders checked after kills", report.checks],
        ["unreadable checkpoint folders", len(report.unreadable)],
        ["kills after which last/ was missing", report.last_missing],
        ["resume failures", len(report.resume_failures)],
        [".tmp-/.old- entries right after kills", report.leftovers_after_kills],
        ["... still there once the run has finished", len(report.leftovers_not_cleaned)],
        [
            "final weights bit-identical to an uninterrupted run",
            {True: "yes", False: "NO", None: "no final"}[report.identical],
        ],
        ["wall time", f"{report.seconds:.0f} s"],
    ]
    table(
        f"kill_resume: model=tiny, state-only data, {max_steps} steps, checkpoint.save_freq={save_freq}",
        ["", "figure"],
        rows,
    )
    for problem in report.unreadable + report.resume_failures + report.leftovers_not_cleaned:
        print(f"  ! {problem}")
    return report
