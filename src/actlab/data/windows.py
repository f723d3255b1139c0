"""Training windows over an EpisodeStore: the observation at frame t and the action chunk t..t+chunk-1.

Chunks never cross an episode's end: steps past it repeat the last action and are flagged in
`action_is_pad`. Batches are gathered with vectorised indexing (`__getitems__`), so a DataLoader
batch costs a few array copies, not one Python call per sample.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from actlab.data.store import EpisodeStore
from actlab.policy.config import ACTION, ACTION_IS_PAD


class ChunkWindows(Dataset):
    def __init__(self, store: EpisodeStore, frames: np.ndarray, chunk_size: int):
        self.store = store
        self.frames = np.asarray(frames, dtype=np.int64)  # the frames (window starts) this split uses
        self.chunk_size = chunk_size
        self.episode_end = np.repeat(store.episode_ends, store.episode_lengths)  # per frame
        self.obs_keys = [k for k in store.features if k != ACTION]

    def __len__(self) -> int:
        return len(self.frames)

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        t = self.frames[np.asarray(indices, dtype=np.int64)]
        steps = t[:, None] + np.arange(self.chunk_size)
        end = self.episode_end[t][:, None]
        batch = {key: self._gather(key, t) for key in self.obs_keys}
        batch[ACTION] = torch.from_numpy(self.store.arrays[ACTION][np.minimum(steps, end - 1)])
        batch[ACTION_IS_PAD] = torch.from_numpy(steps >= end)
        return batch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}

    def _gather(self, key: str, t: np.ndarray) -> torch.Tensor:
        values = torch.from_numpy(np.ascontiguousarray(self.store.arrays[key][t]))
        if self.store.features[key].type == "VISUAL":
            return values.permute(0, 3, 1, 2)  # (B, H, W, 3) uint8 -> (B, 3, H, W)
        return values


class StepBatches(IterableDataset):
    """The endless stream of training batches, where batch k is a pure function of (seed, k).

    Epoch e is the windows in the order `permutation(seed, e)`, cut into batches; batch k is batch
    k mod n of epoch k // n. A run resumed at step k (`start_step`) therefore continues exactly where it
    stopped, whatever the loader workers or processes. Loader workers produce every W-th batch (PyTorch
    returns them round-robin, so in order); each of R data-parallel processes takes its own slice.
    """

    def __init__(self, windows: ChunkWindows, batch_size: int, seed: int):
        self.windows = windows
        self.batch_size = batch_size
        self.seed = seed
        self.start_step = 0

    def __iter__(self):
        worker = get_worker_info()
        worker_id, n_workers = (worker.id, worker.num_workers) if worker else (0, 1)
        rank, world = (
            (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
        )
        per_step = self.batch_size * world
        per_epoch = max(1, len(self.windows) // per_step)  # batches per epoch (drop the remainder)
        step, cached_epoch, order = self.start_step + worker_id, None, None
        while True:
            epoch, k = divmod(step, per_epoch)
            if epoch != cached_epoch:
                perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.windows))
                order, cached_epoch = np.resize(perm, per_epoch * per_step), epoch  # wraps if data < batch
            start = k * per_step + rank * self.batch_size
            yield self.windows.__getitems__(order[start : start + self.batch_size])
            step += n_workers


def collate_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`__getitems__` already returns a collated batch."""
    return batch
