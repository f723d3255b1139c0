"""Decoded camera frames, cached once as uint8 .npy files and memory-mapped for training.

A cache entry is keyed by a fingerprint of the source files (path, size, mtime) and the decode
settings, so editing the source rebuilds it. Entries are published by `atomic_dir`: a killed build never
leaves a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from actlab.io import atomic_dir, remove_stale

CACHE_VERSION = 1


def fingerprint(files: Iterable[Path], settings: dict) -> str:
    digest = hashlib.sha256(json.dumps({"version": CACHE_VERSION, **settings}, sort_keys=True).encode())
    for path in sorted(Path(p).resolve() for p in files):
        st = path.stat()
        digest.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def cached_frames(
    cache_dir: Path,
    key: str,
    shapes: dict[str, tuple[int, ...]],
    fill: Callable[[dict[str, np.ndarray]], None],
) -> dict[str, np.ndarray]:
    """Read-only memmaps {name: (N, H, W, 3) uint8} for cache entry `key`; `fill` writes them if absent."""
    entry = Path(cache_dir) / key
    if not (entry / "complete").is_file():
        _build(entry, shapes, fill)
    return {name: np.load(entry / f"{_file(name)}.npy", mmap_mode="r") for name in shapes}


def _build(entry: Path, shapes: dict[str, tuple[int, ...]], fill: Callable[[dict[str, np.ndarray]], None]) -> None:
    remove_stale(entry.parent)  # entries a killed build left behind
    shutil.rmtree(entry, ignore_errors=True)  # an incomplete entry left by an older version
    try:
        with atomic_dir(entry) as tmp:
            arrays = {
                name: np.lib.format.open_memmap(tmp / f"{_file(name)}.npy", mode="w+", dtype=np.uint8, shape=shape)
                for name, shape in shapes.items()
            }
            fill(arrays)
            for array in arrays.values():
                array.flush()
            del arrays
            (tmp / "complete").write_text("")
    except FileExistsError:  # another process finished the same entry first
        if not (entry / "complete").is_file():
            raise


def _file(name: str) -> str:
    return name.replace("/", "_")
