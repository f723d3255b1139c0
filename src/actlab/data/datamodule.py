"""LightningDataModule: loads the EpisodeStore, splits whole episodes into train/val, builds loaders."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from actlab.config.schema import DatasetConfig
from actlab.data.augment import ImageAugment
from actlab.data.formats import load_store
from actlab.data.store import EpisodeStore
from actlab.data.windows import ChunkWindows, StepBatches, collate_batch
from actlab.errors import ActlabError

log = logging.getLogger(__name__)


def split_episodes(num_episodes: int, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) episode numbers; the validation set is whole episodes, fixed by `seed`."""
    n_val = int(round(num_episodes * val_split)) if num_episodes > 1 else 0
    n_val = min(max(n_val, 1 if val_split > 0 and num_episodes > 1 else 0), num_episodes - 1)
    order = np.random.default_rng(seed).permutation(num_episodes)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def episode_frames(store: EpisodeStore, episodes: np.ndarray) -> np.ndarray:
    if len(episodes) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(store.episode_starts[e], store.episode_ends[e]) for e in episodes])


def frame_probabilities(store: EpisodeStore, frames: np.ndarray, weights: list[float]) -> np.ndarray:
    """`dataset.weights`: each of `frames` sampled with probability proportional to its dataset's weight
    divided by that dataset's number of `frames` (frames within a dataset equally likely)."""
    parts = store.parts
    if len(weights) != len(parts):
        raise ActlabError(f"dataset.weights={list(weights)} has {len(weights)} numbers for {len(parts)} datasets")
    dataset = store.frame_datasets()[frames] if len(parts) > 1 else np.zeros(len(frames), dtype=np.int64)
    counts = np.bincount(dataset, minlength=len(parts))
    empty = [str(p.root or p.name) for p, n in zip(parts, counts, strict=True) if n == 0]
    if empty:
        raise ActlabError(
            f"dataset.weights: every episode of {empty[0]} is in the validation split, so none can be sampled "
            "for training; lower dataset.val_split or add episodes to it"
        )
    probabilities = np.asarray(weights, dtype=np.float64)[dataset] / counts[dataset]
    return probabilities / probabilities.sum()


class ACTDataModule(L.LightningDataModule):
    """Training batches come from an endless `StepBatches` stream (training is counted in steps); its
    position is saved with every checkpoint, so a resumed run sees the batches it would have seen."""

    def __init__(
        self,
        cfg: DatasetConfig,
        cache_dir: str | Path,
        chunk_size: int,
        seed: int,
        n_obs_steps: int = 1,
        store: EpisodeStore | None = None,
    ):
        super().__init__()
        self.cfg = cfg
        self.cache_dir = Path(cache_dir)
        self.chunk_size = chunk_size
        self.n_obs_steps = n_obs_steps
        self.seed = seed
        self.store = store

    def prepare(self) -> EpisodeStore:
        """Loads the data once (decoding cameras into the frame cache on first use)."""
        if self.store is None:
            self.store = load_store(self.cfg, self.cache_dir)
        self.train_episodes, self.val_episodes = split_episodes(self.store.num_episodes, self.cfg.val_split, self.seed)
        windows = lambda frames: ChunkWindows(self.store, frames, self.chunk_size, self.n_obs_steps)  # noqa: E731
        self.train_set = windows(episode_frames(self.store, self.train_episodes))
        # A fixed shuffle of the validation frames, so `trainer.limit_val_batches` always sees the same
        # representative subset rather than the first frames of the first episodes.
        val_frames = np.random.default_rng(self.seed).permutation(episode_frames(self.store, self.val_episodes))
        self.val_set = windows(val_frames)
        augment = ImageAugment(self.cfg.augment, self.store.camera_keys) if self.cfg.augment.enabled else None
        probabilities = None
        if self.cfg.weights is not None:
            probabilities = frame_probabilities(self.store, self.train_set.frames, self.cfg.weights)
        self.train_stream = StepBatches(self.train_set, self.cfg.batch_size, self.seed, augment, probabilities)
        return self.store

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_stream, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, batch_size=self.cfg.batch_size)

    def _loader(self, data: Dataset, batch_size: int | None) -> DataLoader:
        workers = self.cfg.num_workers
        return DataLoader(
            data,
            batch_size=batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            collate_fn=collate_batch,
            # Loading never draws from the global generators, so it cannot shift dropout or VAE noise.
            generator=torch.Generator().manual_seed(self.seed),
        )

    def state_dict(self) -> dict[str, Any]:
        return {"next_step": self.trainer.global_step if self.trainer else 0}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.train_stream.start_step = int(state_dict["next_step"])
