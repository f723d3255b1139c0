"""Demonstration recording throughput: scripted robosuite Lift demonstrations per second with N recorder
processes (`dataset.collect.workers`) against 1 (the simulator in the collecting process), from two 64x64
cameras (the image quickstart's), stored as PNG frames and as LeRobot's AV1 videos. Rendering dominates
and uses one core per simulator; the collecting process writes every episode. The datasets are checked to
be the same for every count. Times include building the simulators and the dataset's start-up.

    python -m bench collect     # about 3 minutes on 2 AVX2 cores
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.common import table

EPISODES = 10


def collect(video: bool, workers: int, data_dir: Path) -> tuple[float, Path]:
    """Seconds to record EPISODES demonstrations of the image quickstart's settings (its env and collection
    config, composed from conf/ as `train.py experiment=quickstart_image` would) and the dataset's folder."""
    from actlab.config.compose import compose_train
    from actlab.sim.collect import ensure_demonstrations

    overrides = [f"dataset.collect.episodes={EPISODES}", f"dataset.collect.video={video}",
                 f"dataset.collect.workers={workers}"]  # fmt: skip
    cfg = compose_train(["experiment=quickstart_image", *overrides], data_dir / "run")
    started = time.perf_counter()
    root = ensure_demonstrations(cfg.env, cfg.dataset.collect, data_dir)
    return time.perf_counter() - started, root


def same_frames(a: Path, b: Path) -> bool:
    """The two datasets' frame tables (states, actions, indices and, for PNG, the image bytes) are equal."""
    import pandas as pd

    def rows(path: Path) -> dict[str, list]:
        table = pd.read_parquet(path)
        return {c: [v.tolist() if hasattr(v, "tolist") else v for v in table[c]] for c in table.columns}

    files = sorted(p.relative_to(a) for p in a.rglob("*.parquet") if "meta" not in p.relative_to(a).parts)
    return bool(files) and all(rows(a / f) == rows(b / f) for f in files)


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="actlab-bench-collect-") as tmp:
        for storage, video in (("PNG", False), ("AV1 video", True)):
            base, base_root = collect(video, 1, Path(tmp) / f"{storage}_1")
            rows.append([storage, "1 (in-process)", f"{base:.1f}", f"{EPISODES / base:.2f}", "1.00", "-"])
            seconds, root = collect(video, 2, Path(tmp) / f"{storage}_2")
            same = "yes" if same_frames(base_root, root) else "NO"
            rows.append([storage, "2", f"{seconds:.1f}", f"{EPISODES / seconds:.2f}", f"{base / seconds:.2f}", same])
    table(
        f"collect: {EPISODES} scripted Lift demonstrations, cameras agentview + robot0_eye_in_hand at 64x64",
        ["storage", "recorders", "seconds", "demos/s", "ratio", "same dataset"],
        rows,
    )
