"""What a LeRobot dataset folder says about itself, whatever its codebase version: meta/info.json (fps,
features and their names, file templates), the episodes table (meta/episodes/*.parquet in v3.0,
meta/episodes.jsonl in v2.x) and the statistics (meta/stats.json, or meta/episodes_stats.jsonl in v2.1);
and the policy features a run takes from it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from actlab.errors import ActlabError
from actlab.features import ACTION, OBS_ENV_STATE, OBS_IMAGES, OBS_STATE, PolicyFeature
from actlab.io import read_json

VECTOR_TYPES = {OBS_STATE: "STATE", OBS_ENV_STATE: "ENV", ACTION: "ACTION"}
VERSIONS = ("v2.0", "v2.1", "v3.0")
NUMERIC_DTYPES = (
    "float16",
    "float32",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
)  # what a state, environment state or action vector may hold


@dataclass
class Layout:
    """What the metadata of a LeRobot folder says, whatever its version."""

    root: Path
    info: dict
    episodes: dict[str, np.ndarray]  # episode_index, length (+ v3.0 video file columns)
    stats: dict[str, dict[str, np.ndarray]]

    @property
    def version(self) -> str:
        return self.info["codebase_version"]

    @property
    def fps(self) -> float:
        return float(self.info["fps"])

    def video_file(self, key: str, episode_row: int) -> tuple[Path, float]:
        """The mp4 holding an episode's frames of camera `key`, and the episode's first timestamp in it."""
        ep = self.episodes
        if self.version == "v3.0":
            prefix = f"videos/{key}/"
            name = self.info["video_path"].format(
                video_key=key,
                chunk_index=int(ep[prefix + "chunk_index"][episode_row]),
                file_index=int(ep[prefix + "file_index"][episode_row]),
            )
            return self.root / name, float(ep[prefix + "from_timestamp"][episode_row])
        index = int(ep["episode_index"][episode_row])
        chunk = index // int(self.info.get("chunks_size", 1000))
        name = self.info["video_path"].format(episode_chunk=chunk, video_key=key, episode_index=index)
        return self.root / name, 0.0


def vector_names(feature: dict) -> list[str] | None:
    """The per-dimension names info.json gives a vector (a list, or {group: [names]} as some robots write
    them), or None when it gives none that fit."""
    names = feature.get("names")
    if isinstance(names, dict):
        names = [n for group in names.values() for n in (group if isinstance(group, list) else [group])]
    if not isinstance(names, list) or len(names) != int(np.prod(feature["shape"])):
        return None
    return [str(n) for n in names]


def read_layout(root: Path) -> Layout:
    info = read_json(root / "meta" / "info.json")
    if not isinstance(info, dict):
        raise ActlabError(f"{root}/meta/info.json: expected a JSON object (codebase_version, fps, features, ...)")
    version = info.get("codebase_version")
    if version not in VERSIONS:
        raise ActlabError(f"{root}/meta/info.json: codebase_version {version!r} is not one of {VERSIONS}")
    check_info(root, info)
    if version == "v3.0":
        files = sorted((root / "meta" / "episodes").rglob("*.parquet"))
        if not files:
            raise ActlabError(f"{root}/meta/episodes holds no parquet files (codebase v3.0)")
        table = pa.concat_tables(pq.read_table(f) for f in files)
        keep = ["episode_index", "length", *(c for c in table.column_names if c.startswith("videos/"))]
        episodes = {c: table[c].to_numpy() for c in keep}
    else:
        rows = read_jsonl(root / "meta" / "episodes.jsonl")
        episodes = {k: np.array([r[k] for r in rows]) for k in ("episode_index", "length")}
    return Layout(root, info, episodes, read_stats(root))


def check_info(root: Path, info: dict) -> None:
    """What the loader takes from info.json on trust: a frame rate (> 0, finite) and a map of features, each
    with a dtype and a shape; anything else is one line naming the file and the key."""
    path = root / "meta" / "info.json"
    if "fps" not in info:
        raise ActlabError(f"{path}: no 'fps'; expected the frame rate of the recordings (a number > 0)")
    fps = info["fps"]
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not np.isfinite(fps) or fps <= 0:
        raise ActlabError(f"{path}: 'fps' is {fps!r}; expected the frame rate of the recordings (a number > 0)")
    features = info.get("features")
    if not isinstance(features, dict) or not features:
        raise ActlabError(
            f"{path}: 'features' is {str(features)[:60]!r}; expected a map of feature -> {{dtype, shape, names}}"
        )
    for key, feature in features.items():
        if not isinstance(feature, dict) or not isinstance(feature.get("dtype"), str):
            raise ActlabError(f"{path}: 'features.{key}' has no dtype; expected {{dtype, shape, names}}")
        shape = feature.get("shape")
        if key not in VECTOR_TYPES and feature["dtype"] not in ("image", "video"):
            continue  # not a feature a policy reads
        if not isinstance(shape, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape
        ):
            raise ActlabError(f"{path}: 'features.{key}.shape' is {shape!r}; expected a list of sizes > 0")
    total = info.get("total_frames")
    if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total < 0):
        raise ActlabError(f"{path}: 'total_frames' is {total!r}; expected the number of frames in data/")


def read_stats(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """meta/stats.json, or the aggregate of meta/episodes_stats.jsonl (v2.1); {} when there are none."""
    meta = root / "meta"
    if (meta / "stats.json").is_file():
        raw = read_json(meta / "stats.json")
    elif (meta / "episodes_stats.jsonl").is_file():
        from lerobot.datasets.compute_stats import aggregate_stats

        per_episode = [
            {k: {s: np.asarray(v) for s, v in st.items()} for k, st in row["stats"].items()}
            for row in read_jsonl(meta / "episodes_stats.jsonl")
        ]
        raw = aggregate_stats(per_episode)
    else:
        return {}
    source = stats_file(root)
    if not isinstance(raw, dict):
        raise ActlabError(f"{source}: expected a map of feature -> {{mean, std, min, max, ...}}")
    for key, st in raw.items():
        if not isinstance(st, dict):
            raise ActlabError(f"{source}: '{key}' is {str(st)[:40]!r}; expected a map of {{mean, std, min, max, ...}}")
    return {k: {s: stat_array(source, k, s, v) for s, v in st.items()} for k, st in raw.items()}


def stats_file(root: Path) -> Path:
    """The file the statistics come from: meta/stats.json, else meta/episodes_stats.jsonl (v2.1)."""
    meta = root / "meta"
    return meta / ("stats.json" if (meta / "stats.json").is_file() else "episodes_stats.jsonl")


def stat_array(source: Path, key: str, name: str, value: object) -> np.ndarray:
    """One statistic as float32 numbers, or one line naming the file, the feature and the statistic. (Whether
    they are finite is checked for the features a run uses, actlab.data.store.check_finite_stats.)"""
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        array = None
    if array is None or array.dtype == object:
        raise ActlabError(f"{source}: '{key}.{name}' = {str(value)[:60]!r} is not a number or a list of numbers")
    return array


def data_files(root: Path) -> list[Path]:
    """The parquet files under data/, in order."""
    files = sorted((root / "data").rglob("*.parquet"))
    if not files:
        raise ActlabError(f"{root}/data holds no parquet files")
    return files


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise ActlabError(f"{path} is missing")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def select_features(info_features: dict, cameras: list[str] | None, root: Path) -> dict[str, PolicyFeature]:
    """Policy features from info.json: the chosen cameras, state, environment state and action."""
    features: dict[str, PolicyFeature] = {}
    available = [k for k, f in info_features.items() if f["dtype"] in ("image", "video")]
    for key in select_cameras(available, cameras, root):
        features[key] = PolicyFeature("VISUAL", chw_shape(info_features[key]))
    for key, ftype in VECTOR_TYPES.items():
        if key in info_features:
            shape = tuple(info_features[key]["shape"])
            dtype = info_features[key]["dtype"]
            if dtype not in NUMERIC_DTYPES:
                raise ActlabError(
                    f"{root}/meta/info.json: 'features.{key}.dtype' is {dtype!r}; expected a numeric dtype "
                    "(e.g. float32)"
                )
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
