"""Writing LeRobot v3.0 datasets with LeRobot's own writer (`LeRobotDataset.create`): the one writer that
demonstration collection, `actlab-convert`, the tests and the benchmarks use.

    with lerobot_writer(root, features, fps=20, video=True) as write_episode:
        write_episode(frames, task="lift the cube")   # frames: dicts of per-frame arrays (images H x W x 3 uint8)

The dataset is written into a temporary folder and published by `atomic_dir` when the block ends: an
interrupted write never leaves a half-written dataset. LeRobot's per-episode logging, the `datasets`
progress bars and the AV1 encoder banner are kept quiet.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from actlab.features import PolicyFeature
from actlab.io import atomic_dir, remove_stale
from actlab.lerobot_io.features import lerobot_feature_specs

Frame = dict[str, np.ndarray]


@contextmanager
def lerobot_writer(
    root: str | Path,
    features: dict[str, PolicyFeature],
    fps: float,
    video: bool = True,
    repo_id: str | None = None,
    robot_type: str | None = None,
) -> Iterator[Callable[[Iterable[Frame], str], None]]:
    """Yields `write_episode(frames, task)`; the dataset appears at `root` when the block ends."""
    import av
    import datasets
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = Path(root)
    datasets.disable_progress_bars()
    os.environ.setdefault("SVT_LOG", "1")
    av.logging.set_level(av.logging.ERROR)
    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.setLevel(max(level, logging.WARNING))  # LeRobot logs its codec choice for every episode
    remove_stale(root.parent, root.name)  # what a killed write left behind
    specs = lerobot_feature_specs(features, video)
    try:
        with atomic_dir(root, create=False) as tmp:
            dataset = LeRobotDataset.create(
                repo_id=repo_id or f"local/{root.name}",
                fps=round(fps),
                features=specs,
                root=tmp,
                use_videos=video,
                robot_type=robot_type,
            )

            def write_episode(frames: Iterable[Frame], task: str) -> None:
                for frame in frames:
                    dataset.add_frame({**{k: np.asarray(frame[k]) for k in specs}, "task": task})
                dataset.save_episode()

            yield write_episode
            dataset.finalize()
    finally:
        root_logger.setLevel(level)
