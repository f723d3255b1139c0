"""Layout 3 of the npy format: `observations.npy` as flat float32 rows (cameras as H x W x 3 in [0, 1],
then the state) described by `metadata.txt`, as the public bimanual code writes it. That code fills the
file through `np.memmap` from byte 0, over the .npy header, so a file whose header is gone is read as raw
float32 rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from actlab.config.datasets import NpyDatasetConfig
from actlab.data.formats.npy_values import camera_map_of, checked_floats, episode_store, to_uint8
from actlab.data.frame_cache import cached_frames, fingerprint
from actlab.data.store import EpisodeStore
from actlab.errors import ActlabError
from actlab.features import ACTION, OBS_IMAGES, OBS_STATE, PolicyFeature

NPY_HEADER = 128  # bytes of a version-1 .npy header for a 2-D float32 array


def load_flat_rows(root: Path, cfg: NpyDatasetConfig, lengths: np.ndarray, cache_dir: Path) -> EpisodeStore:
    """Layout 3: flat float32 rows + metadata.txt (cameras first, [0, 1], then the state)."""
    meta = read_metadata(root / "metadata.txt")
    height, width = meta["camera_height"], meta["camera_width"]
    rows = meta.get("total_sample_count")
    count = meta.get("rollout_count", len(lengths))
    if count > len(lengths):
        raise ActlabError(f"{root}/metadata.txt: rollout_count={count} but rollout_length.npy has {len(lengths)}")
    lengths = lengths[:count]
    n = int(lengths.sum())
    if "sample_count" in meta and meta["sample_count"] != n:
        raise ActlabError(
            f"{root}/rollout_length.npy sums to {n} frames but metadata.txt says sample_count={meta['sample_count']}"
        )
    observations = read_raw_rows(root / "observations.npy", rows)
    actions = read_raw_rows(root / "actions.npy", rows)
    if len(observations) < n or len(actions) < n:
        raise ActlabError(
            f"{root}: rollout_length.npy sums to {n} frames but observations.npy has {len(observations)} "
            f"and actions.npy {len(actions)} rows"
        )
    names = list(camera_map_of(cfg).values())
    image_size = height * width * 3
    state_dim = observations.shape[1] - len(names) * image_size
    if state_dim < 0:
        raise ActlabError(
            f"{root}/observations.npy rows have {observations.shape[1]} values, fewer than {len(names)} cameras "
            f"of {height}x{width}x3 (metadata.txt)"
        )
    arrays = {ACTION: checked_floats(actions[:n], root / "actions.npy", "actions")}
    features = {}
    if state_dim:
        state = observations[:n, len(names) * image_size :]
        arrays[OBS_STATE] = checked_floats(state, root / "observations.npy", "state")
        features[OBS_STATE] = PolicyFeature("STATE", (state_dim,))
    keys = [f"{OBS_IMAGES}.{name}" for name in names]
    for key in keys:
        features[key] = PolicyFeature("VISUAL", (3, height, width))
    features[ACTION] = PolicyFeature("ACTION", (actions.shape[1],))

    def fill(out: dict[str, np.ndarray], chunk: int = 512) -> None:
        for start in tqdm(range(0, n, chunk), desc="caching cameras", leave=False):
            block = observations[start : min(n, start + chunk), : len(names) * image_size]
            block = block.reshape(len(block), len(names), height, width, 3)
            for c, key in enumerate(keys):
                out[key][start : start + len(block)] = to_uint8(block[:, c])

    if keys:
        source = [root / "observations.npy", root / "metadata.txt", root / "rollout_length.npy"]
        key = fingerprint(source, {"format": "npy-flat", "cameras": names})
        arrays.update(cached_frames(cache_dir, key, {k: (n, height, width, 3) for k in keys}, fill))
    return episode_store(root, cfg, features, arrays, lengths)


def read_metadata(path: Path) -> dict[str, int]:
    values = {}
    for item in path.read_text().split():
        name, _, value = item.partition("=")
        try:
            values[name] = int(value)
        except ValueError as e:
            raise ActlabError(f"{path}: '{item}' is not name=integer") from e
    for required in ("camera_height", "camera_width"):
        if required not in values:
            raise ActlabError(f"{path}: no {required}=...; expected camera_height, camera_width and counts")
    return values


def read_raw_rows(path: Path, rows: int | None) -> np.ndarray:
    """A 2-D float32 array from a .npy file, or from raw float32 rows when its header was overwritten."""
    if not path.is_file():
        raise ActlabError(f"{path} is missing")
    try:
        array = np.load(path, mmap_mode="r")
    except ValueError:  # written through np.memmap from byte 0: raw rows (+ the old header's length)
        if not rows:
            raise ActlabError(f"{path} has no .npy header and metadata.txt gives no total_sample_count") from None
        size = path.stat().st_size
        for payload in (size - NPY_HEADER, size):
            if payload > 0 and payload % (4 * rows) == 0:
                return np.memmap(path, dtype=np.float32, mode="r", shape=(rows, payload // (4 * rows)))
        raise ActlabError(f"{path}: {size} bytes do not hold {rows} float32 rows") from None
    if array.ndim != 2 or array.dtype != np.float32:
        raise ActlabError(f"{path}: expected float32 rows (frames x values), got {array.dtype} {array.shape}")
    return array
