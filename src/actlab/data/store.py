"""EpisodeStore: a dataset as flat per-frame arrays plus episode bounds, features and statistics.

Every format reader produces one; nothing downstream knows which format the data came from.
Vectors are float32 arrays in memory, images uint8 (N, H, W, 3) arrays that are usually memory-mapped
from the frame cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from actlab.errors import ActlabError
from actlab.features import ACTION, PolicyFeature

Stats = dict[str, dict[str, np.ndarray]]


@dataclass
class EpisodeStore:
    name: str
    fps: float
    features: dict[str, PolicyFeature]  # batch key -> type and shape (images as (3, H, W))
    arrays: dict[str, np.ndarray]  # batch key -> (N, ...) per-frame values
    episode_starts: np.ndarray  # (E,) first global frame of each episode
    episode_ends: np.ndarray  # (E,) one past the last frame
    stats: Stats = field(default_factory=dict)
    root: Path | None = None
    names: dict[str, list[str] | None] = field(default_factory=dict)  # vector key -> per-dimension names

    def __post_init__(self) -> None:
        if ACTION not in self.features:
            raise ActlabError(f"dataset {self.name}: no 'action' feature; expected an 'action' column")
        n = self.num_frames
        for key, array in self.arrays.items():
            if len(array) != n:
                raise ActlabError(f"dataset {self.name}: '{key}' has {len(array)} frames; expected {n}")
        if np.any(self.episode_ends <= self.episode_starts):
            raise ActlabError(f"dataset {self.name}: an episode has no frames")
        self.stats = {**compute_stats(self, [k for k in self.features if k not in self.stats]), **self.stats}
        self.stats = {k: sanitize_stats(v) for k, v in self.stats.items() if k in self.features}
        check_finite_stats(self.stats, f"dataset {self.name}")

    @property
    def num_frames(self) -> int:
        return int(self.episode_ends[-1]) if len(self.episode_ends) else 0

    @property
    def num_episodes(self) -> int:
        return len(self.episode_starts)

    @property
    def episode_lengths(self) -> np.ndarray:
        return self.episode_ends - self.episode_starts

    @property
    def camera_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.type == "VISUAL"]

    @property
    def parts(self) -> list[EpisodeStore]:
        """The datasets this one is made of: itself, unless it joins several (data/union.py)."""
        return [self]

    def dimension_names(self, key: str) -> list[str]:
        """Names of a vector's dimensions: the dataset's own, else `key[i]`."""
        names = self.names.get(key)
        return names if names else [f"{key}[{i}]" for i in range(self.features[key].shape[0])]

    def frame_episodes(self) -> np.ndarray:
        """(N,) episode number of every frame."""
        return np.repeat(np.arange(self.num_episodes), self.episode_lengths)


def compute_stats(store: EpisodeStore, keys: list[str], max_image_frames: int = 1000) -> Stats:
    """Mean/std/min/max per feature; images per channel over an evenly spaced subset of frames."""
    stats: Stats = {}
    for key in keys:
        array = store.arrays[key]
        if store.features[key].type == "VISUAL":
            idx = np.linspace(0, len(array) - 1, min(len(array), max_image_frames)).astype(np.int64)
            values = array[idx].reshape(-1, array.shape[-1]).astype(np.float64) / 255.0
            shape = (-1, 1, 1)
        else:
            values = array
            shape = (-1,)
        # float64 accumulators without a float64 copy of the data
        stats[key] = {
            "mean": values.mean(axis=0, dtype=np.float64).reshape(shape).astype(np.float32),
            "std": values.std(axis=0, dtype=np.float64).reshape(shape).astype(np.float32),
            "min": values.min(axis=0).reshape(shape).astype(np.float32),
            "max": values.max(axis=0).reshape(shape).astype(np.float32),
        }
    return stats


STD_FLOOR = 1e-6  # a std below it (a constant dimension) is replaced by 1: that dimension is left unscaled


def check_finite_stats(stats: Stats, source: str) -> None:
    """Statistics must be finite numbers: one line naming `source`, the feature and the statistic."""
    for key, values in stats.items():
        for name in ("mean", "std", "min", "max"):
            if name in values and not np.isfinite(np.asarray(values[name], dtype=np.float64)).all():
                raise ActlabError(
                    f"{source}: the statistics of '{key}' ({name}) are not finite (NaN or inf); "
                    "check the data for NaN, or delete the statistics to have them computed from the data"
                )


def sanitize_stats(stats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A constant dimension (std < STD_FLOOR) would be scaled by 1e8 at deployment; leave it unscaled instead."""
    out = {k: np.asarray(v, dtype=np.float32) for k, v in stats.items()}
    if "std" in out:
        out["std"] = np.where(out["std"] < STD_FLOOR, 1.0, out["std"]).astype(np.float32)
    return out
