"""Dataset formats: each `dataset.format` maps to one reader returning an EpisodeStore."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from actlab.config.schema import DatasetConfig
from actlab.data.formats.lerobot import load_lerobot, load_parquet
from actlab.data.formats.npy import load_npy
from actlab.data.store import EpisodeStore
from actlab.data.union import load_union
from actlab.errors import ActlabError

FORMATS: dict[str, Callable[[DatasetConfig, Path], EpisodeStore]] = {
    "lerobot": load_lerobot,
    "parquet": load_parquet,
    "npy": load_npy,
}


def load_store(cfg: DatasetConfig, cache_dir: Path) -> EpisodeStore:
    """The dataset `cfg` names; a list `root` is the union of those datasets (data/union.py)."""
    if cfg.format not in FORMATS:
        raise ActlabError(f"dataset.format={cfg.format!r} is not one of {sorted(FORMATS)}")
    if isinstance(cfg.root, (list, tuple)):
        return load_union(cfg, Path(cache_dir), FORMATS[cfg.format])
    return FORMATS[cfg.format](cfg, Path(cache_dir))
