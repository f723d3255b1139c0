"""Helpers shared by the benchmarks."""

from __future__ import annotations

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
    from actlab.features import PolicyFeature
    from actlab.lerobot_io.writer import lerobot_writer

    rng = np.random.default_rng(0)
    features = {
        "observation.state": PolicyFeature("STATE", (state_dim,)),
        "action": PolicyFeature("ACTION", (action_dim,)),
    }
    features.update({f"observation.images.{c}": PolicyFeature("VISUAL", (3, *hw)) for c in cameras})

    def frame() -> dict[str, np.ndarray]:
        return {
            "observation.state": rng.normal(size=state_dim).astype(np.float32),
            "action": rng.normal(size=action_dim).astype(np.float32),
            **{f"observation.images.{c}": rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for c in cameras},
        }

    with lerobot_writer(root, features, fps=30, video=video, repo_id=f"bench/{root.name}") as write_episode:
        for _ in range(episodes):
            write_episode([frame() for _ in range(frames)], "bench")
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
