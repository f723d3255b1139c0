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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from actlab.features import PolicyFeature
from actlab.io import atomic_dir, remove_stale
from actlab.lerobot_io.features import lerobot_feature_specs

Frame = dict[str, np.ndarray]


class DatasetWriter:
    """LeRobot's dataset writer, episode by episode: `writer(frames, task)` writes a whole episode; a control
    loop adds frames as they come (`add_frame`) and then saves (`save_episode`) or drops (`clear_episode`)
    the episode."""

    def __init__(self, dataset, specs: dict[str, dict]):
        self.dataset, self.specs = dataset, specs
        self.pending = 0  # frames added to the episode being written

    def add_frame(self, frame: Frame, task: str) -> None:
        self.dataset.add_frame({**{k: np.asarray(frame[k]) for k in self.specs}, "task": task})
        self.pending += 1

    def save_episode(self) -> None:
        if self.pending:
            self.dataset.save_episode()
        self.pending = 0

    def clear_episode(self) -> None:
        if self.pending:
            self.dataset.clear_episode_buffer()
        self.pending = 0

    @property
    def episodes(self) -> int:
        return self.dataset.meta.total_episodes

    def __call__(self, frames: Iterable[Frame], task: str) -> None:
        for frame in frames:
            self.add_frame(frame, task)
        self.save_episode()


@contextmanager
def lerobot_writer(
    root: str | Path,
    features: dict[str, PolicyFeature],
    fps: float,
    video: bool = True,
    repo_id: str | None = None,
    robot_type: str | None = None,
    names: dict[str, list[str] | None] | None = None,
    extra_specs: dict[str, dict] | None = None,
    image_writer_threads: int = 0,
    keep_on_error: bool = False,
) -> Iterator[DatasetWriter]:
    """Yields a DatasetWriter; the dataset appears at `root` when the block ends. `names` gives vectors'
    per-dimension names, `extra_specs` more LeRobot feature specs (e.g. `next.success`); with
    `keep_on_error` the episodes saved so far are published even when the block raises (the error is
    raised again afterwards); an episode not yet saved is dropped."""
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
    for key, key_names in (names or {}).items():
        if key in specs and key_names and specs[key]["dtype"] == "float32":
            specs[key]["names"] = list(key_names)
    specs.update(extra_specs or {})
    error: BaseException | None = None
    try:
        with atomic_dir(root, create=False) as tmp:
            dataset = LeRobotDataset.create(
                repo_id=repo_id or f"local/{root.name}",
                fps=round(fps),
                features=specs,
                root=tmp,
                use_videos=video,
                robot_type=robot_type,
                image_writer_threads=image_writer_threads,
            )
            writer = DatasetWriter(dataset, specs)
            try:
                yield writer
            except BaseException as e:
                if not keep_on_error:
                    raise
                error = e
                writer.clear_episode()
            dataset.finalize()
    finally:
        root_logger.setLevel(level)
    if error is not None:
        raise error
