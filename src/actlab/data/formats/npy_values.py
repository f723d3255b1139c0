"""What every npy layout shares: float vectors checked, frames as uint8, the camera map, the EpisodeStore."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from actlab.config.datasets import DEFAULT_CAMERA_MAP, NpyDatasetConfig
from actlab.data.store import EpisodeStore
from actlab.errors import ActlabError


def camera_map_of(cfg: NpyDatasetConfig) -> dict[str, str]:
    camera_map = DEFAULT_CAMERA_MAP if cfg.camera_map is None else cfg.camera_map
    if not isinstance(camera_map, dict) or not all(isinstance(v, str) for v in camera_map.values()):
        raise ActlabError(
            f"dataset.camera_map={camera_map}: expected a map of observation keys to camera names, "
            "e.g. {image_left: left, image_right: right}"
        )
    return {str(k): v for k, v in camera_map.items()}


def checked_floats(array: np.ndarray, path: Path, key: str) -> np.ndarray:
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
        raise ActlabError(f"{path}: '{key}' must be a 2-D float array, got {array.dtype} {array.shape}")
    values = np.asarray(array, dtype=np.float32)
    if not np.isfinite(values).all():
        frame = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
        raise ActlabError(f"{path}: '{key}' holds NaN or Inf (first at frame {frame})")
    return values


def to_uint8(images: np.ndarray) -> np.ndarray:
    if images.dtype == np.uint8:
        return images
    return np.clip(np.rint(np.asarray(images, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def episode_store(root: Path, cfg: NpyDatasetConfig, features, arrays, lengths: np.ndarray) -> EpisodeStore:
    ends = np.cumsum(lengths)
    return EpisodeStore(
        name=root.name,
        fps=cfg.fps,
        features=features,
        arrays=arrays,
        episode_starts=ends - lengths,
        episode_ends=ends,
        root=root,
    )
