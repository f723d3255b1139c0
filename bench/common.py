"""Helpers shared by the benchmarks."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def write_image_dataset(
    root: Path, cameras=("left", "right"), hw=(96, 96), episodes=4, frames=60, state_dim=14, action_dim=14, video=True
) -> Path:
    """A LeRobot v3.0 dataset of random frames, written with LeRobot's own writer (once)."""
    if (root / "meta" / "info.json").is_file():
        return root
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    os.environ.setdefault("SVT_LOG", "1")  # quiet AV1 encoder banners
    rng = np.random.default_rng(0)
    features = {
        "observation.state": {"dtype": "float32", "shape": (state_dim,), "names": None},
        "action": {"dtype": "float32", "shape": (action_dim,), "names": None},
        **{
            f"observation.images.{c}": {
                "dtype": "video" if video else "image",
                "shape": (*hw, 3),
                "names": ["height", "width", "channels"],
            }
            for c in cameras
        },
    }
    ds = LeRobotDataset.create(repo_id=f"bench/{root.name}", fps=30, features=features, root=root, use_videos=video)
    for _ in range(episodes):
        for _ in range(frames):
            ds.add_frame(
                {
                    "observation.state": rng.normal(size=state_dim).astype(np.float32),
                    "action": rng.normal(size=action_dim).astype(np.float32),
                    **{f"observation.images.{c}": rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for c in cameras},
                    "task": "bench",
                }
            )
        ds.save_episode()
    ds.finalize()
    return root


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
