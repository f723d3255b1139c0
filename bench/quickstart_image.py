"""The image quickstart timed from an empty data folder: `train.py experiment=quickstart_image` in a fresh
directory, its wall time split into start-up, collecting the demonstrations, training (with its in-training
evaluations) and the final evaluation, and its success over the final episodes. Run it as
`python -m bench --emulate-avx2 quickstart_image` on a CPU with AVX-512 to see what an AVX2-only CPU gets.

    python -m bench quickstart_image     # about 11 minutes with AVX-512 BF16, 13 with --emulate-avx2

`BENCH_QUICK=1` runs a few demonstrations and steps only (a check that the benchmark runs, not a figure).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import table

REPO = Path(__file__).resolve().parents[1]
QUICK = [
    "dataset.collect.episodes=4",
    "trainer.max_steps=4",
    "env.eval_freq=4",
    "env.eval_episodes=2",
    "env.final_eval_episodes=2",
    "trainer.val_check_interval=4",
    "trainer.limit_val_batches=1",
    "dataset.batch_size=4",
    "env.max_steps=30",
]
# A line of the run's log -> the phase that starts with it (the first match counts).
MARKERS = {
    "Collecting": "collecting",
    "actlab: training ACT": "training",
    "max_steps=": "final evaluation",  # Lightning's "`Trainer.fit` stopped: `max_steps=N` reached."
}


def run(overrides: list[str]) -> tuple[dict[str, float], float, dict]:
    """Seconds per phase, the wall time and eval/final_metrics.json of one run from an empty data folder."""
    with tempfile.TemporaryDirectory(prefix="actlab-bench-quickstart-") as tmp:
        env = {**os.environ, "ACTLAB_DATA_DIR": f"{tmp}/data"}
        command = [sys.executable, str(REPO / "train.py"), "experiment=quickstart_image", f"hydra.run.dir={tmp}/run",
                   "trainer.enable_progress_bar=false", *overrides]  # fmt: skip
        started = time.perf_counter()
        marks = {"start-up": started}
        process = subprocess.Popen(
            command, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        tail = []
        for line in process.stdout:
            tail = [*tail[-30:], line]
            for marker, phase in MARKERS.items():
                if marker in line and phase not in marks:
                    marks[phase] = time.perf_counter()
        if process.wait() != 0:
            raise RuntimeError(f"train.py experiment=quickstart_image failed:\n{''.join(tail)}")
        wall = time.perf_counter() - started
        metrics = json.loads(Path(f"{tmp}/run/eval/final_metrics.json").read_text())
    ends = [*list(marks.values())[1:], started + wall]
    phases = {name: end - begin for (name, begin), end in zip(marks.items(), ends, strict=True)}
    return phases, wall, metrics


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:04.1f} s"


def main() -> None:
    quick = os.environ.get("BENCH_QUICK") == "1"
    phases, wall, metrics = run(QUICK if quick else [])
    success = metrics.get("success_rate", float("nan"))
    rows = [[phase, minutes(seconds)] for phase, seconds in phases.items()]
    rows.append(["total (wall)", minutes(wall)])
    rows.append([f"success over the final {metrics['episodes']} episodes", f"{100 * success:.0f} %"])
    table(
        "python train.py experiment=quickstart_image, from an empty data folder"
        + (" -- BENCH_QUICK: a few steps, not a figure" if quick else ""),
        ["phase", "time"],
        rows,
    )


if __name__ == "__main__":
    main()
