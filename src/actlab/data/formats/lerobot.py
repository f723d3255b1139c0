"""LeRobot datasets (codebase v3.0): metadata through LeRobot's own `LeRobotDatasetMetadata`, frames read
once with pyarrow (vectors) and PyAV (videos: no system FFmpeg needed) into an EpisodeStore.

Without a local `root`, the `repo_id` is fetched from the hub; offline that fails with one line.
"""

from __future__ import annotations

import io
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from tqdm import tqdm

from actlab.config.schema import DatasetConfig
from actlab.data.frame_cache import cached_frames, fingerprint
from actlab.data.store import EpisodeStore
from actlab.errors import ActlabError
from actlab.policy.config import ACTION, OBS_ENV_STATE, OBS_IMAGES, OBS_STATE, PolicyFeature

log = logging.getLogger(__name__)

VECTOR_TYPES = {OBS_STATE: "STATE", OBS_ENV_STATE: "ENV", ACTION: "ACTION"}


def load_lerobot(cfg: DatasetConfig, cache_dir: Path) -> EpisodeStore:
    root = resolve_root(cfg)
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    try:
        meta = LeRobotDatasetMetadata(cfg.repo_id or f"local/{root.name}", root=root)
    except Exception as e:  # LeRobot raises its own types for old versions and bad files
        raise ActlabError(f"{root}: not a readable LeRobot v3.0 dataset ({type(e).__name__}: {e})") from e

    features = select_features(meta.features, cfg.cameras, root)
    vector_keys = [k for k, f in features.items() if f.type != "VISUAL"]
    table = read_data_table(root, ["index", "episode_index", "timestamp", *vector_keys])
    starts, ends = episode_bounds(table["episode_index"].to_numpy(), root)
    arrays = {k: vector_column(table[k], features[k].shape[0], root, k) for k in vector_keys}
    cameras = [k for k, f in features.items() if f.type == "VISUAL"]
    if cameras:
        arrays.update(decode_cameras(root, meta, table, features, cameras, starts, cache_dir))

    stats = {
        k: {s: np.asarray(v) for s, v in meta.stats[k].items()} for k in features if meta.stats and k in meta.stats
    }
    return EpisodeStore(
        name=cfg.repo_id or root.name,
        fps=float(meta.fps),
        features=features,
        arrays=arrays,
        episode_starts=starts,
        episode_ends=ends,
        stats=stats,
        root=root,
    )


def resolve_root(cfg: DatasetConfig) -> Path:
    """The local dataset folder: `root`, or the hub download of `repo_id`."""
    if cfg.root:
        root = Path(cfg.root).expanduser()
        if not (root / "meta" / "info.json").is_file():
            what = "does not exist" if not root.exists() else "has no meta/info.json"
            raise ActlabError(f"dataset.root={root} {what}; expected a LeRobot dataset folder")
        return root
    if not cfg.repo_id:
        raise ActlabError(f"dataset={cfg.name}: set dataset.root=/path/to/dataset (a folder with meta/info.json)")
    try:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        return Path(LeRobotDataset(cfg.repo_id, video_backend="pyav").root)
    except Exception as e:
        raise ActlabError(
            f"dataset={cfg.name}: no dataset.root given and the hub dataset {cfg.repo_id} could not be "
            f"fetched ({type(e).__name__}); pass dataset.root=/path/to/local/copy"
        ) from e


def select_features(info_features: dict, cameras: list[str] | None, root: Path) -> dict[str, PolicyFeature]:
    """Policy features from info.json: state, environment state, action and the chosen cameras."""
    features: dict[str, PolicyFeature] = {}
    available = [k for k, f in info_features.items() if f["dtype"] in ("image", "video")]
    for key in select_cameras(available, cameras, root):
        features[key] = PolicyFeature("VISUAL", chw_shape(info_features[key]))
    for key, ftype in VECTOR_TYPES.items():
        if key in info_features:
            shape = tuple(info_features[key]["shape"])
            if len(shape) != 1:
                raise ActlabError(f"{root}/meta/info.json: '{key}' has shape {list(shape)}; expected [dim]")
            features[key] = PolicyFeature(ftype, shape)
    if ACTION not in features:
        raise ActlabError(f"{root}/meta/info.json: no 'action' feature; expected one to train on")
    return features


def select_cameras(available: list[str], wanted: list[str] | None, root: Path) -> list[str]:
    if wanted is None:
        return available
    chosen = []
    for name in wanted:
        key = name if name.startswith(OBS_IMAGES) else f"{OBS_IMAGES}.{name}"
        if key not in available:
            names = [k.removeprefix(f"{OBS_IMAGES}.") for k in available]
            raise ActlabError(f"dataset.cameras: '{name}' is not in {root} (cameras there: {names})")
        chosen.append(key)
    return chosen


def chw_shape(feature: dict) -> tuple[int, int, int]:
    shape, names = list(feature["shape"]), feature.get("names") or ["height", "width", "channels"]
    if names[0] in ("channel", "channels"):
        return tuple(shape)
    return (shape[2], shape[0], shape[1])


def read_data_table(root: Path, columns: list[str]) -> pa.Table:
    """The given columns of every data parquet file, sorted by global frame index."""
    files = sorted((root / "data").rglob("*.parquet"))
    if not files:
        raise ActlabError(f"{root}/data holds no parquet files")
    tables = []
    for path in files:
        missing = [c for c in columns if c not in pq.read_schema(path).names]
        if missing:
            raise ActlabError(f"{path}: missing columns {missing}")
        tables.append(pq.read_table(path, columns=columns))
    return pa.concat_tables(tables).sort_by("index")


def episode_bounds(episode_index: np.ndarray, root: Path) -> tuple[np.ndarray, np.ndarray]:
    change = np.flatnonzero(np.diff(episode_index)) + 1
    starts = np.concatenate([[0], change]).astype(np.int64)
    ends = np.concatenate([change, [len(episode_index)]]).astype(np.int64)
    if len(np.unique(episode_index[starts])) != len(starts):
        raise ActlabError(f"{root}: the frames of an episode are not contiguous in 'index' order")
    return starts, ends


def vector_column(column: pa.ChunkedArray, dim: int, root: Path, key: str) -> np.ndarray:
    array = column.combine_chunks()
    if pa.types.is_list(array.type) or pa.types.is_fixed_size_list(array.type):
        array = array.flatten()
    values = array.to_numpy(zero_copy_only=False)
    if values.size != len(column) * dim:
        raise ActlabError(f"{root}: '{key}' has {values.size} values for {len(column)} frames; expected {dim} each")
    values = values.reshape(len(column), dim).astype(np.float32)
    if not np.isfinite(values).all():
        raise ActlabError(f"{root}: '{key}' holds NaN or Inf values")
    return values


def decode_cameras(root, meta, table, features, cameras, starts, cache_dir) -> dict[str, np.ndarray]:
    """Every camera frame decoded into the frame cache once; later runs memory-map it."""
    n = table.num_rows
    shapes = {k: (n, features[k].shape[1], features[k].shape[2], features[k].shape[0]) for k in cameras}
    sources = [p for p in (root / "data").rglob("*.parquet")] + [
        p for k in cameras if k in meta.video_keys for p in (root / "videos" / k).rglob("*.mp4")
    ]
    key = fingerprint(sources + [root / "meta" / "info.json"], {"format": "lerobot-v3", "cameras": cameras})

    def fill(arrays: dict[str, np.ndarray]) -> None:
        for cam in cameras:
            if cam in meta.video_keys:
                decode_videos(root, meta, table, cam, starts, arrays[cam])
            else:
                decode_images(read_data_table(root, ["index", cam])[cam], arrays[cam], root, cam)

    return cached_frames(cache_dir, key, shapes, fill)


def decode_images(column: pa.ChunkedArray, out: np.ndarray, root: Path, key: str) -> None:
    blobs = column.combine_chunks().field("bytes").to_pylist()

    def decode(i: int) -> None:
        out[i] = _checked(np.asarray(Image.open(io.BytesIO(blobs[i])).convert("RGB")), out.shape[1:], root, key)

    with ThreadPoolExecutor() as pool:
        list(tqdm(pool.map(decode, range(len(blobs))), total=len(blobs), desc=f"decoding {key}", leave=False))


def decode_videos(root: Path, meta, table: pa.Table, key: str, starts: np.ndarray, out: np.ndarray) -> None:
    """Decodes each video file once, front to back, writing frames to their global index."""
    prefix = f"videos/{key}/"
    columns = ["episode_index", "length", prefix + "chunk_index", prefix + "file_index", prefix + "from_timestamp"]
    episodes = {c: np.asarray(meta.episodes[c]) for c in columns}
    row_of_episode = {int(e): i for i, e in enumerate(episodes["episode_index"])}
    timestamps = table["timestamp"].to_numpy().astype(np.float64)
    episode_index = table["episode_index"].to_numpy()
    per_file: dict[Path, dict[int, int]] = {}  # video file -> {frame number in the file: global frame}
    for first in starts:
        ep = row_of_episode[int(episode_index[first])]
        chunk, file = int(episodes[prefix + "chunk_index"][ep]), int(episodes[prefix + "file_index"][ep])
        path = root / meta.video_path.format(video_key=key, chunk_index=chunk, file_index=file)
        last = first + int(episodes["length"][ep])
        frames = np.rint((episodes[prefix + "from_timestamp"][ep] + timestamps[first:last]) * meta.fps)
        per_file.setdefault(path, {}).update(zip(frames.astype(np.int64).tolist(), range(first, last), strict=True))

    filled = np.zeros(len(out), dtype=bool)
    with tqdm(total=int(sum(len(m) for m in per_file.values())), desc=f"decoding {key}", leave=False) as bar:
        for path, wanted in per_file.items():
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for frame in container.decode(stream):
                    number = int(round(float(frame.pts * stream.time_base) * meta.fps))
                    target = wanted.get(number)
                    if target is not None:
                        out[target] = _checked(frame.to_ndarray(format="rgb24"), out.shape[1:], root, key)
                        filled[target] = True
                        bar.update()
    if not filled.all():
        missing = int(np.flatnonzero(~filled)[0])
        raise ActlabError(f"{root}: videos of '{key}' have no frame for global frame {missing}")


def _checked(image: np.ndarray, shape: tuple[int, ...], root: Path, key: str) -> np.ndarray:
    if image.shape != tuple(shape):
        raise ActlabError(f"{root}: '{key}' frames are {image.shape}; meta/info.json says {tuple(shape)}")
    return image
