"""Writers for the dataset layouts the tests read: the bimanual npy layouts of seed 002 and LeRobot v2.x
folders written by hand to the documented layout (LeRobot 0.4 can only write v3.0)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def bimanual_frames(lengths: list[int], hw=(16, 20), state_dim=6, action_dim=14, seed=0) -> dict[str, np.ndarray]:
    """Random data in the bimanual shapes: two cameras, a state, 14-D actions."""
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    return {
        "image_left": rng.integers(0, 256, (n, *hw, 3), dtype=np.uint8),
        "image_right": rng.integers(0, 256, (n, *hw, 3), dtype=np.uint8),
        "state": rng.normal(size=(n, state_dim)).astype(np.float32),
        "actions": rng.normal(size=(n, action_dim)).astype(np.float32),
    }


def write_npy(root: Path, layout: str, lengths: list[int], data: dict[str, np.ndarray], length_dtype=np.uint16) -> Path:
    """One of the layouts `dataset=npy` reads: folder, npz, dicts (pickled array of dicts), dict_of_arrays
    (pickled dict), flat (float32 rows + metadata.txt) or flat_raw (flat, written through np.memmap over
    the .npy header as the public bimanual code does)."""
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "rollout_length.npy", np.asarray(lengths, dtype=length_dtype))
    obs = {k: data[k] for k in ("image_left", "image_right", "state")}
    n = len(data["actions"])
    if layout.startswith("flat"):
        height, width = data["image_left"].shape[1:3]
        rows = np.concatenate(
            [(obs["image_left"] / 255.0).reshape(n, -1), (obs["image_right"] / 255.0).reshape(n, -1), obs["state"]], 1
        ).astype(np.float32)
        total = n + 3  # the public code allocates more rows than it fills
        (root / "metadata.txt").write_text(
            f"total_sample_count={total} max_steps_per_rollout=100 camera_height={height} camera_width={width} "
            f"skip_frames=0 sample_count={n} rollout_count={len(lengths)}"
        )
        for name, values in (("observations.npy", rows), ("actions.npy", data["actions"])):
            np.save(root / name, np.zeros((total, values.shape[1]), dtype=np.float32))
            if layout == "flat_raw":
                out = np.memmap(root / name, dtype=np.float32, mode="r+", shape=(total, values.shape[1]))
            else:
                out = np.load(root / name, mmap_mode="r+")
            out[:n] = values
            out.flush()
        return root
    np.save(root / "actions.npy", data["actions"])
    if layout == "folder":
        (root / "observations").mkdir()
        for key, value in obs.items():
            np.save(root / "observations" / f"{key}.npy", value)
    elif layout == "npz":
        np.savez(root / "observations.npz", **obs)
    elif layout == "dicts":
        frames = np.empty(n, dtype=object)
        frames[:] = [{k: v[i] for k, v in obs.items()} for i in range(n)]
        np.save(root / "observations.npy", frames, allow_pickle=True)
    elif layout == "dict_of_arrays":
        np.save(root / "observations.npy", obs, allow_pickle=True)
    else:
        raise ValueError(layout)
    return root


def write_lerobot_v2(
    root: Path,
    lengths: list[int],
    version: str = "v2.1",
    cameras: dict[str, str] | None = None,  # camera -> "video" | "image"
    hw=(32, 32),
    state_dim=4,
    action_dim=3,
    fps=10,
    seed=0,
) -> tuple[Path, dict[str, np.ndarray]]:
    """A LeRobot v2.0/v2.1 folder: one parquet and one mp4 per episode, episodes.jsonl, stats. Video frames
    are flat colours (they survive lossy coding); returns the folder and the per-frame arrays written."""
    cameras = cameras or {}
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    arrays = {
        "observation.state": rng.normal(size=(n, state_dim)).astype(np.float32),
        "action": rng.normal(size=(n, action_dim)).astype(np.float32),
    }
    for cam, kind in cameras.items():
        if kind == "video":
            colours = rng.integers(30, 220, (n, 1, 1, 3), dtype=np.uint8)
            arrays[f"observation.images.{cam}"] = np.broadcast_to(colours, (n, *hw, 3)).copy()
        else:
            arrays[f"observation.images.{cam}"] = rng.integers(0, 256, (n, *hw, 3), dtype=np.uint8)
    features = {
        k: {"dtype": "float32", "shape": [v.shape[1]], "names": None}
        for k, v in arrays.items()
        if not k.startswith("observation.images")
    }
    for cam, kind in cameras.items():
        features[f"observation.images.{cam}"] = {
            "dtype": kind,
            "shape": [*hw, 3],
            "names": ["height", "width", "channel"],
        }
    for name, dtype in (
        ("timestamp", "float32"),
        ("frame_index", "int64"),
        ("episode_index", "int64"),
        ("index", "int64"),
        ("task_index", "int64"),
    ):
        features[name] = {"dtype": dtype, "shape": [1], "names": None}
    info = {
        "codebase_version": version,
        "robot_type": "test",
        "total_episodes": len(lengths),
        "total_frames": n,
        "total_tasks": 1,
        "total_videos": len(lengths) * sum(k == "video" for k in cameras.values()),
        "total_chunks": 1,
        "chunks_size": 1000,
        "fps": fps,
        "splits": {"train": f"0:{len(lengths)}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": features,
    }
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=2))
    (root / "meta" / "tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": "test"}) + "\n")
    episodes, episode_stats, start = [], [], 0
    for ep, length in enumerate(lengths):
        rows = slice(start, start + length)
        columns = {
            "timestamp": pa.array(np.arange(length, dtype=np.float32) / fps),
            "frame_index": pa.array(np.arange(length)),
            "episode_index": pa.array(np.full(length, ep)),
            "index": pa.array(np.arange(start, start + length)),
            "task_index": pa.array(np.zeros(length, dtype=np.int64)),
        }
        for key in ("observation.state", "action"):
            columns[key] = pa.array(list(arrays[key][rows]), type=pa.list_(pa.float32()))
        for cam, kind in cameras.items():
            key = f"observation.images.{cam}"
            if kind == "image":
                columns[key] = pa.array([{"bytes": _png(img), "path": None} for img in arrays[key][rows]])
            else:
                _write_video(root / f"videos/chunk-000/{key}/episode_{ep:06d}.mp4", arrays[key][rows], fps)
        path = root / f"data/chunk-000/episode_{ep:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), path)
        episodes.append({"episode_index": ep, "tasks": ["test"], "length": length})
        episode_stats.append(
            {"episode_index": ep, "stats": {k: _stats(arrays[k][rows]) for k in ("observation.state", "action")}}
        )
        start += length
    (root / "meta" / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in episodes))
    if version == "v2.1":
        (root / "meta" / "episodes_stats.jsonl").write_text("".join(json.dumps(e) + "\n" for e in episode_stats))
    else:
        stats = {k: _stats(arrays[k]) for k in ("observation.state", "action")}
        (root / "meta" / "stats.json").write_text(json.dumps(stats))
    return root, arrays


def _stats(values: np.ndarray) -> dict[str, list]:
    return {
        "min": values.min(0).tolist(),
        "max": values.max(0).tolist(),
        "mean": values.mean(0).tolist(),
        "std": values.std(0).tolist(),
        "count": [len(values)],
    }


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_video(path: Path, frames: np.ndarray, fps: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libsvtav1", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
