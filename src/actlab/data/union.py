"""Several datasets with the same features as one EpisodeStore (`dataset.root=[/data/a,/data/b]`): e.g. the
original demonstrations plus the episodes recorded while deploying the policy.

Each dataset is read by its format's reader (and frame cache) as usual; the union keeps every episode's
bounds (windows never cross from one dataset into the next), reads camera frames from each dataset's own
memory-mapped cache without copying them, and has statistics over all the frames: vectors computed on the
concatenation, images pooled from each dataset's statistics by frame count (as LeRobot's `aggregate_stats`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from actlab.data.store import EpisodeStore, Stats
from actlab.errors import ActlabError
from actlab.features import OBS_IMAGES


@dataclass
class UnionStore(EpisodeStore):
    datasets: list[EpisodeStore] = field(default_factory=list)

    @property
    def parts(self) -> list[EpisodeStore]:
        return self.datasets

    def frame_datasets(self) -> np.ndarray:
        """(N,) the number (position in `dataset.root`) of the dataset each frame comes from."""
        return np.repeat(np.arange(len(self.datasets)), [d.num_frames for d in self.datasets])


def load_union(cfg, cache_dir: Path, load_one: Callable[..., EpisodeStore]) -> EpisodeStore:
    """`cfg.root` a list of folders: each read by `load_one(cfg with that root, cache_dir)`, then joined."""
    roots = list(cfg.root)
    if len(roots) == 1:
        return load_one(replace(cfg, root=roots[0], weights=None), cache_dir)
    return union([load_one(replace(cfg, root=root, weights=None), cache_dir) for root in roots])


def union(stores: Sequence[EpisodeStore]) -> UnionStore:
    """The datasets as one, in order; they must have the same features (one line naming the one that differs)."""
    first = stores[0]
    for store in stores[1:]:
        check_same_features(first, store)
    offsets = np.cumsum([0, *(s.num_frames for s in stores)])
    arrays = {}
    for key, f in first.features.items():
        parts = [s.arrays[key] for s in stores]
        arrays[key] = ConcatFrames(parts) if f.type == "VISUAL" else np.concatenate(parts)
    images = [k for k in first.features if first.features[k].type == "VISUAL"]
    return UnionStore(
        name=" + ".join(s.name for s in stores),
        fps=first.fps,
        features=dict(first.features),
        arrays=arrays,
        episode_starts=np.concatenate([s.episode_starts + o for s, o in zip(stores, offsets, strict=False)]),
        episode_ends=np.concatenate([s.episode_ends + o for s, o in zip(stores, offsets, strict=False)]),
        stats=pooled_stats(stores, images),  # the vectors' are computed on the concatenation
        root=None,
        names=dict(first.names),
        datasets=list(stores),
    )


def where(store: EpisodeStore) -> str:
    return str(store.root or store.name)


def check_same_features(first: EpisodeStore, other: EpisodeStore) -> None:
    def differs(how: str) -> ActlabError:
        return ActlabError(
            f"dataset.root: {where(other)} {how}; the datasets of a list root must have the same features"
        )

    a = where(first)
    if other.fps != first.fps:
        raise differs(f"is recorded at {other.fps:g} fps but {a} at {first.fps:g} fps")
    missing = [k for k in first.features if k not in other.features]
    extra = [k for k in other.features if k not in first.features]
    shared = [k.removeprefix(f"{OBS_IMAGES}.") for k in first.camera_keys if k in other.features]
    hint = f" (dataset.cameras={shared} picks the cameras both have)" if shared else ""
    if missing:
        cameras = all(first.features[k].type == "VISUAL" for k in missing)
        raise differs(f"has no {missing} (which {a} has){hint if cameras else ''}")
    if extra:
        cameras = all(other.features[k].type == "VISUAL" for k in extra)
        raise differs(f"has {extra} which {a} has not{hint if cameras else ''}")
    for key, f in first.features.items():
        g = other.features[key]
        if (g.type, tuple(g.shape)) != (f.type, tuple(f.shape)):
            raise differs(f"has '{key}' {g.type} {list(g.shape)} but {a} has {f.type} {list(f.shape)}")
        mine, theirs = first.names.get(key), other.names.get(key)
        if mine and theirs and list(mine) != list(theirs):
            i = next(i for i, (x, y) in enumerate(zip(mine, theirs, strict=False)) if x != y)
            raise differs(f"names '{key}' dimension {i} '{theirs[i]}' but {a} names it '{mine[i]}'")


def pooled_stats(stores: Sequence[EpisodeStore], keys: list[str]) -> Stats:
    """The statistics of `keys` over all the stores' frames from each store's own: means weighted by frame
    count, variances pooled (within plus between), extremes of the extremes."""
    counts = np.array([s.num_frames for s in stores], dtype=np.float64)
    weights = counts / counts.sum()
    out: Stats = {}
    for key in keys:
        per = [{k: np.asarray(v, dtype=np.float64) for k, v in s.stats[key].items()} for s in stores]
        mean = sum(w * p["mean"] for w, p in zip(weights, per, strict=True))
        var = sum(w * (p["std"] ** 2 + (p["mean"] - mean) ** 2) for w, p in zip(weights, per, strict=True))
        out[key] = {
            "mean": mean,
            "std": np.sqrt(var),
            "min": np.min([p["min"] for p in per], axis=0),
            "max": np.max([p["max"] for p in per], axis=0),
        }
    return out


class ConcatFrames:
    """Arrays (N_i, ...) read as one (sum N_i, ...) without copying: indexing with an int, a slice or an
    array of frame numbers reads each frame from the array that holds it (a memory map stays one)."""

    def __init__(self, parts: Sequence[np.ndarray]):
        self.parts = list(parts)
        self.offsets = np.cumsum([0, *(len(p) for p in self.parts)])
        self.shape = (int(self.offsets[-1]), *self.parts[0].shape[1:])
        self.dtype = self.parts[0].dtype
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.concatenate(self.parts) if dtype is None else np.concatenate(self.parts).astype(dtype)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            i = int(index) + (len(self) if index < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"frame {index} out of range for {len(self)} frames")
            part = int(np.searchsorted(self.offsets, i, side="right")) - 1
            return self.parts[part][i - self.offsets[part]]
        if isinstance(index, slice):
            index = np.arange(len(self))[index]
        index = np.asarray(index, dtype=np.int64)
        flat = np.where(index < 0, index + len(self), index).ravel()
        if flat.size and (flat.min() < 0 or flat.max() >= len(self)):
            raise IndexError(f"frame numbers out of range for {len(self)} frames")
        part = np.searchsorted(self.offsets, flat, side="right") - 1
        out = np.empty((len(flat), *self.shape[1:]), self.dtype)
        for p in np.unique(part):
            rows = part == p
            out[rows] = self.parts[p][flat[rows] - self.offsets[p]]
        return out.reshape(*index.shape, *self.shape[1:])
