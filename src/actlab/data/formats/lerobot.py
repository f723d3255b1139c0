"""Reading LeRobot datasets, codebase v2.0, v2.1 and v3.0, with pyarrow and PyAV into an EpisodeStore.

One reader serves both `dataset.format=lerobot` (a local folder or, when `root` is null, the hub
`repo_id`) and `dataset.format=parquet` (seed 004: a local folder, no LeRobot loader, no network).
lerobot 0.4's own loader refuses v2.x, which most hub datasets (the Unitree G1 ones included) still are;
this one chooses by `codebase_version`:

- v3.0: `data/chunk-*/file-*.parquet` hold many episodes; `meta/episodes/*.parquet` tells which video
  file holds each episode and from which timestamp; `meta/stats.json`.
- v2.x: one parquet and one mp4 per episode (`data_path` / `video_path` templates in info.json),
  `meta/episodes.jsonl`; stats in `meta/stats.json` (v2.0) or per episode in `meta/episodes_stats.jsonl`
  (v2.1, aggregated here with LeRobot's own `aggregate_stats`).

Camera frames (PNG columns and mp4 files) decode in `lerobot_frames`, into the frame cache, once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from actlab.config.schema import DatasetConfig
from actlab.data.formats.lerobot_frames import decode_cameras
from actlab.data.formats.lerobot_meta import (
    Layout,
    data_files,
    read_layout,
    select_features,
    stats_file,
    vector_names,
)
from actlab.data.store import EpisodeStore, check_finite_stats
from actlab.errors import ActlabError, reason


def load_lerobot(cfg: DatasetConfig, cache_dir: Path) -> EpisodeStore:
    """`dataset.format=lerobot`: a local folder, or the hub `repo_id` when `root` is null."""
    return load_layout(hub_root(cfg) if not cfg.root else local_root(cfg), cfg, cache_dir)


def load_parquet(cfg: DatasetConfig, cache_dir: Path) -> EpisodeStore:
    """`dataset.format=parquet`: a local LeRobot-layout folder only."""
    if not cfg.root:
        raise ActlabError(f"dataset={cfg.name}: set dataset.root=/path/to/dataset (a folder with meta/info.json)")
    return load_layout(local_root(cfg), cfg, cache_dir)


def local_root(cfg: DatasetConfig) -> Path:
    root = Path(cfg.root).expanduser()
    if not (root / "meta" / "info.json").is_file():
        what = "does not exist" if not root.exists() else "has no meta/info.json"
        raise ActlabError(f"dataset.root={root} {what}; expected a LeRobot dataset folder")
    return root


def hub_root(cfg: DatasetConfig) -> Path:
    if not cfg.repo_id:
        raise ActlabError(f"dataset={cfg.name}: set dataset.root=/path/to/dataset (a folder with meta/info.json)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(cfg.repo_id, repo_type="dataset"))
    except Exception as e:
        raise ActlabError(
            f"dataset={cfg.name}: no dataset.root given and the hub dataset {cfg.repo_id} could not be "
            f"fetched ({type(e).__name__}); pass dataset.root=/path/to/local/copy"
        ) from e


def load_layout(root: Path, cfg: DatasetConfig, cache_dir: Path) -> EpisodeStore:
    layout = read_layout(root)
    features = select_features(layout.info["features"], cfg.cameras, root)
    vectors = {k: f.shape[0] for k, f in features.items() if f.type != "VISUAL"}
    cameras = [k for k, f in features.items() if f.type == "VISUAL"]
    check_camera_files(layout, cameras)
    columns = read_columns(root, ["index", "episode_index", "timestamp"], vectors)
    starts, ends = episode_bounds(columns["episode_index"], root)
    check_episode_lengths(layout, columns["episode_index"][starts], ends - starts)
    check_total_frames(layout, len(columns["index"]))  # after the episodes: their message is more precise
    arrays = {k: columns[k] for k in vectors}
    if cameras:
        arrays.update(decode_cameras(layout, columns, features, cameras, starts, cache_dir))
    stats = {k: v for k, v in layout.stats.items() if k in features}
    check_finite_stats(stats, str(stats_file(root)))
    return EpisodeStore(
        name=root.name if cfg.root else (cfg.repo_id or root.name),  # a local copy is named by its folder
        fps=layout.fps,
        features=features,
        arrays=arrays,
        episode_starts=starts,
        episode_ends=ends,
        stats=stats,
        root=root,
        names={k: vector_names(layout.info["features"][k]) for k in vectors},
    )


def check_camera_files(layout: Layout, cameras: list[str]) -> None:
    """Every camera info.json lists (and the run uses) has files: mp4s under videos/ (and, in v3.0, its
    columns in meta/episodes), or a column of images in the parquet files."""
    root, info = layout.root, layout.info["features"]
    for key in cameras:
        if info[key]["dtype"] == "video":
            videos = root / "videos"
            found = videos.is_dir() and any(key in p.parts for p in videos.rglob("*"))
            listed = layout.version != "v3.0" or f"videos/{key}/chunk_index" in layout.episodes
            if not found or not listed:
                where = f"{videos} holds no files of it" if not found else "meta/episodes has no columns of it"
                raise ActlabError(
                    f"{root}/meta/info.json lists camera '{key}' (dtype video) but {where}; remove it from "
                    "'features' or pick other cameras with dataset.cameras"
                )
        else:
            for path in data_files(root):
                if key not in open_parquet(path).schema_arrow.names:
                    raise ActlabError(
                        f"{root}/meta/info.json lists camera '{key}' (dtype {info[key]['dtype']}) but {path} has no "
                        "column of it; remove it from 'features' or pick other cameras with dataset.cameras"
                    )


def check_total_frames(layout: Layout, frames: int) -> None:
    total = layout.info.get("total_frames")
    if total is not None and total != frames:
        raise ActlabError(
            f"{layout.root}/meta/info.json: 'total_frames' is {total} but data/ holds {frames} frames; the dataset "
            "is inconsistent"
        )


def read_columns(root: Path, scalars: list[str], vectors: dict[str, int]) -> dict[str, np.ndarray]:
    """Scalar and (dim-wide float32) vector columns of every data file, in global `index` order.

    Read one file and one column at a time into preallocated arrays: decoding a whole table at once
    holds several times its size in pyarrow buffers, which matters for millions of frames.
    """
    files = data_files(root)
    parquets = [open_parquet(f) for f in files]
    counts = [p.metadata.num_rows for p in parquets]
    if sum(counts) == 0:
        raise ActlabError(f"{root}/data: the parquet files hold no frames")
    out: dict[str, np.ndarray] = {k: np.empty((sum(counts), dim), np.float32) for k, dim in vectors.items()}
    offset = 0
    for path, parquet, count in zip(files, parquets, counts, strict=True):
        missing = [c for c in [*scalars, *vectors] if c not in parquet.schema_arrow.names]
        if missing:
            raise ActlabError(f"{path}: missing columns {missing}")
        for key in [*scalars, *vectors]:
            row = offset
            for batch in read_batches(parquet, path, key):
                column, rows = batch.column(0), slice(row, row + batch.num_rows)
                if key in vectors:
                    out[key][rows] = vector_values(column, vectors[key], path, key)
                else:
                    values = column.to_numpy(zero_copy_only=False)
                    out.setdefault(key, np.empty(sum(counts), values.dtype))[rows] = values
                row += batch.num_rows
        offset += count
    index = out["index"]
    if not np.all(index[1:] > index[:-1]):  # LeRobot writes frames in order; sort only when they are not
        order = np.argsort(index, kind="stable")
        out = {k: v[order] for k, v in out.items()}
    for key in vectors:
        finite = np.isfinite(out[key]).all(axis=1)
        if not finite.all():
            frame = int(np.flatnonzero(~finite)[0])
            raise ActlabError(f"{root}: '{key}' holds NaN or Inf values (first at frame {frame})")
    return out


def open_parquet(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise ActlabError(f"{path}: not a readable parquet file ({reason(e)})") from None


def read_batches(parquet: pq.ParquetFile, path: Path, key: str):
    try:
        yield from parquet.iter_batches(batch_size=65536, columns=[key])
    except (pa.ArrowException, OSError) as e:
        raise ActlabError(f"{path}: column '{key}' cannot be read ({reason(e)})") from None


def episode_bounds(episode_index: np.ndarray, root: Path) -> tuple[np.ndarray, np.ndarray]:
    change = np.flatnonzero(np.diff(episode_index)) + 1
    starts = np.concatenate([[0], change]).astype(np.int64)
    ends = np.concatenate([change, [len(episode_index)]]).astype(np.int64)
    if len(np.unique(episode_index[starts])) != len(starts):
        raise ActlabError(f"{root}: the frames of an episode are not contiguous in 'index' order")
    return starts, ends


def check_episode_lengths(layout: Layout, episodes: np.ndarray, lengths: np.ndarray) -> None:
    """The frames of each episode in data/ agree with the lengths meta/ lists."""
    listed = dict(zip(layout.episodes["episode_index"].tolist(), layout.episodes["length"].tolist(), strict=True))
    found = dict(zip(episodes.tolist(), lengths.tolist(), strict=True))
    meta = "meta/episodes" if layout.version == "v3.0" else "meta/episodes.jsonl"
    for episode, length in found.items():
        if episode not in listed:
            raise ActlabError(f"{layout.root}: data/ holds episode {episode}, which {meta} does not list")
        if listed[episode] != length:
            raise ActlabError(
                f"{layout.root}: episode {episode} has {length} frames in data/ but {meta} says {listed[episode]}; "
                "the dataset is inconsistent"
            )
    for episode, length in listed.items():
        if episode not in found:
            raise ActlabError(
                f"{layout.root}: {meta} lists episode {episode} ({length} frames) but data/ has no frames of it; "
                "the dataset is inconsistent"
            )


def vector_values(array: pa.Array, dim: int, path: Path, key: str) -> np.ndarray:
    frames = len(array)
    if pa.types.is_list(array.type) or pa.types.is_fixed_size_list(array.type):
        array = array.flatten()
    if not (pa.types.is_floating(array.type) or pa.types.is_integer(array.type)):
        kind = "string" if pa.types.is_string(array.type) or pa.types.is_large_string(array.type) else str(array.type)
        raise ActlabError(f"{path}: '{key}' holds {kind} values; expected numbers")
    values = array.to_numpy(zero_copy_only=False)
    if values.size != frames * dim:
        raise ActlabError(f"{path}: '{key}' has {values.size} values for {frames} frames; expected {dim} each")
    return values.reshape(frames, dim)
