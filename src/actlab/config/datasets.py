"""The `dataset` group: one schema per dataset format (actlab.data.formats reads them), and one for the
presets whose episodes are scripted demonstrations collected in the simulator (dataset=lift, dataset=aloha).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from omegaconf import MISSING

from actlab.config.options import SCHEMAS, option_schema, typed
from actlab.config.ranges import COUNT, FRACTION, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, SEED, UNIT, between
from actlab.errors import ActlabError


@dataclass
class DemoCollectionConfig:
    """Scripted demonstrations written into a LeRobot dataset when the dataset folder is missing."""

    episodes: int = field(default=50, metadata=COUNT)
    seed: int = field(default=0, metadata=SEED)
    max_steps: int = field(default=200, metadata=COUNT)
    # std of Gaussian noise on executed actions (recorded actions stay clean)
    action_noise: float = field(default=0.0, metadata=NON_NEGATIVE)
    video: bool = True  # cameras stored as mp4 (LeRobot default) or png images
    # simulator processes recording episodes (1 = in this process); same dataset for any count
    workers: int = field(default=1, metadata=COUNT)


@dataclass
class AugmentConfig:
    """Training-split image augmentation (off by default)."""

    enabled: bool = False
    crop_scale: list[float] = field(default_factory=lambda: [0.85, 1.0])  # crop area fraction, resized back
    # random shift (DrQ): pad by this many edge pixels, crop back to the image size
    shift: int = field(default=0, metadata=NON_NEGATIVE_INT)
    brightness: float = field(default=0.2, metadata=UNIT)  # factor drawn from [1 - b, 1 + b]
    contrast: float = field(default=0.2, metadata=UNIT)
    saturation: float = field(default=0.2, metadata=UNIT)
    hue: float = field(default=0.02, metadata=between(0, 0.5))  # shift drawn from [-h, h] (fraction of the hue circle)


@dataclass
class DatasetConfig:
    """Where episodes come from and how they are batched: the keys every dataset has."""

    name: str = MISSING
    format: str = MISSING  # lerobot | parquet | npy: the reader (each format has its own schema)
    # the dataset folder, or a list of folders of datasets with the same features, trained on as one
    # (statistics over all; episodes kept apart). A folder or a list, hence untyped
    root: Any = None
    # with a list root: each dataset's relative probability of being sampled (frames within a dataset
    # equally likely); null = every frame of the union equally likely
    weights: list[float] | None = None
    batch_size: int = field(default=8, metadata=COUNT)
    num_workers: int = field(default=0, metadata=NON_NEGATIVE_INT)
    val_split: float = field(default=0.1, metadata=FRACTION)  # fraction of whole episodes held out for validation loss
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def check(self) -> None:
        formats = dataset_formats()
        if self.format not in formats:
            raise ActlabError(f"dataset.format={self.format!r} is not one of {sorted(formats)}")
        if not isinstance(self, formats[self.format]):
            raise ActlabError(
                f"dataset.format={self.format} does not fit the keys of dataset={self.name} ({type(self).__name__}); "
                f"choose a dataset of that format instead (e.g. dataset={self.format})"
            )
        check_roots(self.root, self.weights)


@dataclass
class LeRobotLayoutConfig(DatasetConfig):
    """A folder in LeRobot's layout (meta/info.json: dimensions, cameras and fps)."""

    repo_id: str | None = None  # hub id (format lerobot: fetched when root is null); names the dataset
    cameras: list[str] | None = None  # camera names to use; null = every camera in the data


@option_schema("dataset", "lerobot")
@dataclass
class LeRobotDatasetConfig(LeRobotLayoutConfig):
    """Any local LeRobot dataset (v3.0), or a hub one by repo_id."""

    FORMAT: ClassVar[str] = "lerobot"

    format: str = "lerobot"


@option_schema("dataset", "demos")
@dataclass
class DemosDatasetConfig(LeRobotDatasetConfig):
    """A LeRobot dataset of scripted demonstrations, collected in the env group's simulator when `root` is null."""

    collect: DemoCollectionConfig = field(default_factory=DemoCollectionConfig)


@option_schema("dataset", "parquet")
@dataclass
class ParquetDatasetConfig(LeRobotLayoutConfig):
    """A local LeRobot-layout folder (codebase v2.0, v2.1 or v3.0) read with pyarrow: no LeRobot, no network."""

    FORMAT: ClassVar[str] = "parquet"

    format: str = "parquet"


DEFAULT_CAMERA_MAP = {"image_left": "left", "image_right": "right"}  # (npy) the bimanual layout's camera keys


@option_schema("dataset", "npy")
@dataclass
class NpyDatasetConfig(DatasetConfig):
    """The bimanual npy layout (observations, actions.npy, rollout_length.npy)."""

    FORMAT: ClassVar[str] = "npy"

    format: str = "npy"
    # the files do not say; used for the converted dataset and deployment rate
    fps: float = field(default=30.0, metadata=POSITIVE)
    allow_pickle: bool = False  # observations.npy of Python objects needs pickle, which can run code
    # observation key -> camera name; null = DEFAULT_CAMERA_MAP. Untyped and null by default so that an
    # override `dataset.camera_map={top_rgb: top}` replaces the map: Hydra merges a map into a typed one
    # (refusing new keys) and OmegaConf fails to merge into a null typed one. The npy reader checks it.
    camera_map: Any = None
    state_key: str = "state"


def check_roots(root: Any, weights: list[float] | None) -> None:
    """`dataset.root` is a folder or a non-empty list of folders; `dataset.weights`, one positive number per
    folder of a list root."""
    roots = root if isinstance(root, (list, tuple)) else None
    if roots is not None and (not roots or not all(isinstance(r, str) and r for r in roots)):
        raise ActlabError(f"dataset.root={root!r}: expected a folder or a non-empty list of folders")
    if roots is None and root is not None and not isinstance(root, str):
        raise ActlabError(f"dataset.root={root!r}: expected a folder or a list of folders")
    if weights is None:
        return
    if roots is None:
        raise ActlabError(
            f"dataset.weights={list(weights)} needs a list of datasets: dataset.root=[/data/a,/data/b] "
            "dataset.weights=[1,3]"
        )
    if len(weights) != len(roots):
        raise ActlabError(
            f"dataset.weights={list(weights)} has {len(weights)} numbers for {len(roots)} datasets in "
            "dataset.root; expected one per dataset"
        )
    if not all(math.isfinite(w) and w > 0 for w in weights):
        raise ActlabError(f"dataset.weights={list(weights)}: expected positive numbers (relative sampling rates)")


def dataset_formats() -> dict[str, type]:
    """dataset.format -> the schema of that format's datasets."""
    return {cls.FORMAT: cls for cls in SCHEMAS["dataset"].values() if "FORMAT" in vars(cls)}


def saved_dataset_config(data: Mapping[str, Any]) -> DatasetConfig:
    """The typed dataset group of a run's saved settings (hyperparameters.json); the keys of other
    formats that older versions saved with every dataset are left out."""
    schema = dataset_formats().get(data.get("format", "lerobot"), LeRobotDatasetConfig)
    if data.get("collect") is not None and schema is LeRobotDatasetConfig:
        schema = DemosDatasetConfig
    return typed(schema, data, f"dataset={data.get('name')}")
