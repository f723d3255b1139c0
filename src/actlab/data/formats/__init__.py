"""Dataset formats: each `dataset.format` maps to one reader returning an EpisodeStore."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from actlab.config.schema import DatasetConfig
from actlab.data.formats.npy import load_npy
from actlab.data.store import EpisodeStore
from actlab.errors import ActlabError
from actlab.lerobot_io.dataset import load_lerobot, load_parquet

FORMATS: dict[str, Callable[[DatasetConfig, Path], EpisodeStore]] = {
    "lerobot": load_lerobot,
    "parquet": load_parquet,
    "npy": load_npy,
}


def load_store(cfg: DatasetConfig, cache_dir: Path) -> EpisodeStore:
    if cfg.format not in FORMATS:
        raise ActlabError(f"dataset.format={cfg.format!r} is not one of {sorted(FORMATS)}")
    return FORMATS[cfg.format](cfg, Path(cache_dir))


def dataset_config(cfg: DictConfig) -> DatasetConfig:
    """A run config's dataset group as a typed object, with `root` pointing at scripted demonstrations
    (collected first if missing) when the preset collects them (dataset=lift) and no root was given."""
    data: DatasetConfig = OmegaConf.to_object(cfg.dataset)
    if data.collect is not None and not data.root:
        from actlab.sim.collect import ensure_demonstrations

        data.root = str(ensure_demonstrations(cfg.env, data.collect, Path(cfg.paths.data_dir)))
    return data
