"""The bimanual npy layout of seed 002: a folder with `actions.npy` (T x A float), `rollout_length.npy`
(episode lengths, any integer dtype) and the observations in one of the layouts people actually have:

1. `observations/<key>.npy` (or `observations.npz`): one array per key, e.g. `image_left`, `image_right`
   (T x H x W x 3 uint8) and `state` (T x S float). No pickle: the safe default and what `actlab-convert`
   reads back. Folders of .npy files are memory-mapped, never loaded whole.
2. `observations.npy` holding Python objects: an array of dicts, or a dict of arrays. Loading it runs
   pickle, so it needs `dataset.allow_pickle=true`.
3. `observations.npy` as one flat float32 row per frame (cameras as H x W x 3 in [0, 1], then the state)
   described by `metadata.txt` (`camera_height=.. camera_width=.. sample_count=.. rollout_count=..`), as the
   public bimanual code writes it. That code fills the file through `np.memmap` from byte 0, over the .npy
   header, so a file whose header is gone is read as raw float32 rows (`npy_flat` reads this layout).

Camera keys become `observation.images.<name>` through `dataset.camera_map`; the state key is
`dataset.state_key`. Every inconsistency stops with one line naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from actlab.config.datasets import NpyDatasetConfig
from actlab.data.formats.npy_flat import load_flat_rows
from actlab.data.formats.npy_values import camera_map_of, checked_floats, episode_store, to_uint8
from actlab.data.frame_cache import cached_frames, fingerprint
from actlab.data.store import EpisodeStore
from actlab.errors import ActlabError
from actlab.features import ACTION, OBS_IMAGES, OBS_STATE, PolicyFeature


def load_npy(cfg: NpyDatasetConfig, cache_dir: Path) -> EpisodeStore:
    if not cfg.root:
        raise ActlabError(
            "dataset=npy: set dataset.root=/path/to/folder (observations, actions.npy, rollout_length.npy)"
        )
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise ActlabError(f"dataset.root={root} does not exist; expected a folder with actions.npy")
    lengths = read_lengths(root / "rollout_length.npy")
    flat = root / "observations.npy"
    if (root / "metadata.txt").is_file() and flat.is_file() and not _is_object_npy(flat):
        return load_flat_rows(root, cfg, lengths, cache_dir)

    actions = read_matrix(root / "actions.npy")
    observations, source = read_observations(root, cfg.allow_pickle)
    n = len(actions)
    if int(lengths.sum()) != n:
        raise ActlabError(f"{root}/rollout_length.npy sums to {int(lengths.sum())} frames but actions.npy has {n}")
    for key, value in observations.items():
        if len(value) != n:
            raise ActlabError(f"{source}: '{key}' has {len(value)} frames but actions.npy has {n}")

    arrays, features = {ACTION: checked_floats(actions, root / "actions.npy", "actions")}, {}
    if cfg.state_key in observations:
        state = checked_floats(np.asarray(observations[cfg.state_key]), source, cfg.state_key)
        arrays[OBS_STATE] = state
        features[OBS_STATE] = PolicyFeature("STATE", (state.shape[1],))
    camera_map = camera_map_of(cfg)
    missing = [k for k in camera_map if k not in observations]
    if missing:
        raise ActlabError(f"{source}: no {missing} (dataset.camera_map); it holds {sorted(observations)}")
    images = {f"{OBS_IMAGES}.{name}": observations[key] for key, name in camera_map.items()}
    for key, value in images.items():
        _check_images(value, source, key)
        features[key] = PolicyFeature("VISUAL", (3, value.shape[1], value.shape[2]))
    features[ACTION] = PolicyFeature("ACTION", (actions.shape[1],))

    memmapped = all(isinstance(v, np.memmap) and v.dtype == np.uint8 for v in images.values())
    if images and not memmapped:  # in memory (pickle, npz): write them to the frame cache for later runs
        shapes = {k: (n, *v.shape[1:3], 3) for k, v in images.items()}
        key = fingerprint([p for p in root.rglob("*.np[yz]")], {"format": "npy", "camera_map": camera_map})
        images = cached_frames(cache_dir, key, shapes, lambda out: _fill(out, images))
    arrays.update(images)
    return episode_store(root, cfg, features, arrays, lengths)


def read_lengths(path: Path) -> np.ndarray:
    if not path.is_file():
        raise ActlabError(f"{path} is missing; expected the episode lengths")
    if _is_object_npy(path):
        raise ActlabError(
            f"{path} holds Python objects (loading it would run pickle, which can execute code); expected a 1-D "
            "integer array of episode lengths, e.g. np.save(path, np.array(lengths, dtype=np.int64))"
        )
    try:
        lengths = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ActlabError(f"{path}: not a numeric .npy array ({e})") from None
    if lengths.ndim != 1 or not np.issubdtype(lengths.dtype, np.integer):
        raise ActlabError(
            f"{path}: expected a 1-D integer array of episode lengths; got {lengths.dtype} {lengths.shape}"
        )
    if len(lengths) == 0 or (lengths <= 0).any():
        raise ActlabError(f"{path}: every episode needs at least one frame")
    return lengths.astype(np.int64)


def read_matrix(path: Path) -> np.ndarray:
    if not path.is_file():
        raise ActlabError(f"{path} is missing")
    try:
        array = np.load(path, mmap_mode="r")
    except ValueError as e:
        raise ActlabError(f"{path}: not a numeric .npy array ({e})") from e
    if array.ndim != 2:
        raise ActlabError(f"{path}: expected a 2-D (frames x dims) array, got shape {array.shape}")
    return array


def read_observations(root: Path, allow_pickle: bool) -> tuple[dict[str, np.ndarray], Path]:
    """{key: (T, ...) array} from whichever separate-array or pickled layout the folder has."""
    folder, npz, npy = root / "observations", root / "observations.npz", root / "observations.npy"
    if folder.is_dir():
        files = sorted(folder.glob("*.npy"))
        if not files:
            raise ActlabError(f"{folder} holds no .npy files")
        return {f.stem: _load_plain(f) for f in files}, folder
    if npz.is_file():
        with np.load(npz, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}, npz
    if not npy.is_file():
        raise ActlabError(f"{root}: no observations (expected observations/, observations.npz or observations.npy)")
    if not _is_object_npy(npy):
        raise ActlabError(f"{npy}: a numeric array needs a metadata.txt saying how it splits into cameras and state")
    if not allow_pickle:
        raise ActlabError(
            f"{npy} holds Python objects and loading it runs pickle, which can execute code: if you trust "
            "the file pass dataset.allow_pickle=true, or convert it once with actlab-convert"
        )
    data = np.load(npy, allow_pickle=True)
    if data.dtype == object and data.ndim == 0:  # np.save of a dict of arrays
        data = data.item()
        if not isinstance(data, dict):
            raise ActlabError(f"{npy}: expected a dict of arrays or an array of dicts")
        return {k: np.asarray(v) for k, v in data.items()}, npy
    if data.dtype == object and data.ndim == 1 and len(data) and isinstance(data[0], dict):  # array of dicts
        return _stack_frames(data, npy), npy
    raise ActlabError(f"{npy}: expected a dict of arrays or an array of dicts, got {data.dtype} {data.shape}")


def _stack_frames(frames: np.ndarray, path: Path) -> dict[str, np.ndarray]:
    keys = list(frames[0])
    out = {}
    for key in keys:
        first = np.asarray(frames[0][key])
        stacked = np.empty((len(frames), *first.shape), dtype=first.dtype)
        for i, frame in enumerate(frames):
            value = np.asarray(frame.get(key)) if isinstance(frame, dict) else None
            if value is None or value.shape != first.shape:
                got = "nothing" if value is None else value.shape
                raise ActlabError(f"{path}: frame {i} has '{key}' of shape {got}; frame 0 has {first.shape}")
            stacked[i] = value
        out[key] = stacked
    return out


def _load_plain(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        raise ActlabError(f"{path}: not a plain numeric array ({e})") from e


def _is_object_npy(path: Path) -> bool:
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            major, _ = fmt.read_magic(f)
            _, _, dtype = (fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0)(f)
        return dtype.hasobject
    except ValueError:  # no .npy header: raw data
        return False


def _check_images(images: np.ndarray, path: Path, key: str) -> None:
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ActlabError(f"{path}: '{key}' must be (frames, height, width, 3) images, got shape {images.shape}")
    if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
        raise ActlabError(f"{path}: '{key}' must be uint8 (or float in [0, 1]), got {images.dtype}")


def _fill(out: dict[str, np.ndarray], images: dict[str, np.ndarray], chunk: int = 1024) -> None:
    for key, source in images.items():
        for start in tqdm(range(0, len(source), chunk), desc=f"caching {key}", leave=False):
            out[key][start : start + chunk] = to_uint8(source[start : start + chunk])
