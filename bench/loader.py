"""Data loading: actlab's loader vs `LeRobotDataset` with `delta_timestamps`, on the same LeRobot image
dataset (2 cameras 96x96 mp4) and the same windows (chunk 100, batch 8), single process; the start-up
time and peak memory of a 1,000,000-frame state-only dataset; and data loading vs update time in a
real training run.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import table, write_image_dataset

DATA_DIR = Path(tempfile.gettempdir()) / "actlab-bench"
CHUNK, BATCH = 100, 8


def actlab_rate(root: Path, cache_dir: Path, batches: int = 200) -> tuple[float, float]:
    """(samples/s, seconds to build the frame cache the first time)."""
    import torch

    from actlab.config.schema import DatasetConfig
    from actlab.data.formats import load_store
    from actlab.data.windows import ChunkWindows, StepBatches, collate_batch

    start = time.perf_counter()
    store = load_store(DatasetConfig(name="bench", root=str(root)), cache_dir)
    build_s = time.perf_counter() - start
    windows = ChunkWindows(store, np.arange(store.num_frames), chunk_size=CHUNK)
    loader = torch.utils.data.DataLoader(StepBatches(windows, BATCH, seed=0), batch_size=None, collate_fn=collate_batch)
    stream = iter(loader)
    next(stream)
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    return batches * BATCH / (time.perf_counter() - start), build_s


def lerobot_rate(root: Path, batches: int = 10) -> float:
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset(
        f"bench/{root.name}",
        root=root,
        video_backend="pyav",
        delta_timestamps={"action": [i / 30 for i in range(CHUNK)]},
    )
    loader = iter(torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=0))
    next(loader)
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)
    return batches * BATCH / (time.perf_counter() - start)


def write_state_dataset(root: Path, frames: int = 1_000_000, episode_length: int = 1000, dim: int = 14) -> Path:
    """A LeRobot v3.0 state-only dataset written directly with pyarrow (LeRobot's per-frame writer would
    take far longer for a million frames)."""
    if (root / "meta" / "info.json").is_file():
        return root
    rng = np.random.default_rng(0)
    n_episodes = frames // episode_length
    index = np.arange(frames)
    state = rng.normal(size=(frames, dim)).astype(np.float32)
    action = rng.normal(size=(frames, dim)).astype(np.float32)
    table = pa.table(
        {
            "observation.state": pa.FixedSizeListArray.from_arrays(state.ravel(), dim),
            "action": pa.FixedSizeListArray.from_arrays(action.ravel(), dim),
            "timestamp": (index % episode_length / 30).astype(np.float32),
            "frame_index": index % episode_length,
            "episode_index": index // episode_length,
            "index": index,
            "task_index": np.zeros(frames, dtype=np.int64),
        }
    )
    (root / "data" / "chunk-000").mkdir(parents=True)
    pq.write_table(table, root / "data" / "chunk-000" / "file-000.parquet")
    episodes = pa.table(
        {
            "episode_index": np.arange(n_episodes),
            "length": np.full(n_episodes, episode_length),
            "dataset_from_index": np.arange(n_episodes) * episode_length,
            "dataset_to_index": (np.arange(n_episodes) + 1) * episode_length,
        }
    )
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    pq.write_table(episodes, root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    vector = {"dtype": "float32", "shape": [dim], "names": None}
    scalar = lambda dtype: {"dtype": dtype, "shape": [1], "names": None}  # noqa: E731
    info = {
        "codebase_version": "v3.0",
        "fps": 30,
        "total_episodes": n_episodes,
        "total_frames": frames,
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": None,
        "features": {
            "observation.state": vector,
            "action": vector,
            "timestamp": scalar("float32"),
            "frame_index": scalar("int64"),
            "episode_index": scalar("int64"),
            "index": scalar("int64"),
            "task_index": scalar("int64"),
        },
    }
    (root / "meta" / "info.json").write_text(json.dumps(info))
    return root


OPEN_1M = """
import sys, time
start = time.perf_counter()
from actlab.config.schema import DatasetConfig
from actlab.data.datamodule import ACTDataModule
imported = time.perf_counter()
dm = ACTDataModule(DatasetConfig(name="1m", root=sys.argv[1]), sys.argv[2], chunk_size=100, seed=0)
dm.prepare()
print(time.perf_counter() - imported, imported - start)
"""


def one_million_frames(root: Path) -> tuple[float, float, float, float]:
    """(open seconds, import seconds, peak RSS GB of a 200-step training run, its steps/s)."""
    opened = subprocess.run(
        [sys.executable, "-c", OPEN_1M, str(root), str(DATA_DIR / "cache")], capture_output=True, text=True, check=True
    )
    open_s, import_s = map(float, opened.stdout.split())
    out = Path(tempfile.mkdtemp(prefix="actlab-bench-1m-"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "train.py",
            f"dataset.root={root}",
            "model=tiny",
            "trainer.max_steps=200",
            "checkpoint.save_freq=0",
            "trainer.val_check_interval=100",
            "trainer.enable_progress_bar=false",
            "logger=none",
            f"hydra.run.dir={out}",
            f"paths.cache_dir={DATA_DIR / 'cache'}",
        ],
        check=True,
        capture_output=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    elapsed = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert peak_kb >= before
    return open_s, import_s, peak_kb / 1e6, 200 / elapsed


def main() -> None:
    from bench.train_step import actlab_run_metrics

    root = write_image_dataset(DATA_DIR / "two_cam_96x96", cameras=("left", "right"), hw=(96, 96))
    cache = Path(tempfile.mkdtemp(prefix="actlab-bench-cache-"))  # a cold cache: the build is measured
    ours, build_s = actlab_rate(root, cache)
    theirs = lerobot_rate(root)
    table(
        f"Loader, single process: 2 cameras 96x96 (mp4), chunk {CHUNK}, batch {BATCH}",
        ["", "samples/s", "ratio"],
        [
            ["LeRobotDataset + delta_timestamps (pyav)", f"{theirs:.1f}", "1.0"],
            ["actlab ChunkWindows/StepBatches (frame cache)", f"{ours:.0f}", f"{ours / theirs:.0f}x"],
        ],
    )
    print(f"(actlab decoded the videos into its frame cache once, in {build_s:.1f} s)")

    open_s, import_s, peak_gb, steps_s = one_million_frames(write_state_dataset(DATA_DIR / "state_1m"))
    table(
        "1,000,000-frame state-only LeRobot v3.0 dataset",
        ["", "value"],
        [
            ["open (read, split, windows, stats)", f"{open_s:.2f} s (+ {import_s:.1f} s of imports)"],
            ["peak RSS of a 200-step model=tiny training run", f"{peak_gb:.2f} GB"],
            ["training speed in that run", f"{steps_s:.1f} steps/s (batch 64, whole process incl. start-up)"],
        ],
    )

    metrics = actlab_run_metrics(root, "32-true")
    ratio = metrics["dataloading_s"] / metrics["update_s"]
    table(
        "Data loading vs update, model=baseline training on the 2-camera dataset (median over steps)",
        ["train/dataloading_s", "train/update_s", "loading / update"],
        [[f"{metrics['dataloading_s']:.4f}", f"{metrics['update_s']:.3f}", f"{100 * ratio:.2f}%"]],
    )


if __name__ == "__main__":
    main()
