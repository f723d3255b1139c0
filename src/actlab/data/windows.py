"""Training windows over an EpisodeStore: for a frame t, the observations t-n_obs_steps+1..t and the action
chunk t..t+chunk_size-1.

Windows never cross episode bounds: history before an episode's first frame repeats that frame and is
flagged in `observation_is_pad`; steps past its end repeat the last action and are flagged in
`action_is_pad`. With n_obs_steps=1 observations carry no time axis (LeRobot's convention); with more
they are (B, n_obs_steps, ...). Batches are gathered with vectorised indexing (`__getitems__`), so a
DataLoader batch costs a few array copies, not one Python call per sample.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from actlab.data.store import EpisodeStore
from actlab.features import ACTION, ACTION_IS_PAD, OBSERVATION_IS_PAD

Batch = dict[str, torch.Tensor]


class ChunkWindows(Dataset):
    def __init__(self, store: EpisodeStore, frames: np.ndarray, chunk_size: int, n_obs_steps: int = 1):
        self.store = store
        self.frames = np.asarray(frames, dtype=np.int64)  # the frames (window ends) this split uses
        self.chunk_size = chunk_size
        self.n_obs_steps = n_obs_steps
        self.episode_start = np.repeat(store.episode_starts, store.episode_lengths)  # per frame
        self.episode_end = np.repeat(store.episode_ends, store.episode_lengths)
        self.obs_keys = [k for k in store.features if k != ACTION]

    def __len__(self) -> int:
        return len(self.frames)

    def __getitems__(self, indices: list[int]) -> Batch:
        # Sorted frames read memory-mapped images front to back; order within a batch does not matter.
        t = np.sort(self.frames[np.asarray(indices, dtype=np.int64)])
        steps = t[:, None] + np.arange(self.chunk_size)
        end = self.episode_end[t][:, None]
        if self.n_obs_steps == 1:
            batch = {key: self._gather(key, t) for key in self.obs_keys}
        else:
            history = t[:, None] + np.arange(1 - self.n_obs_steps, 1)
            start = self.episode_start[t][:, None]
            batch = {key: self._gather(key, np.maximum(history, start)) for key in self.obs_keys}
            batch[OBSERVATION_IS_PAD] = torch.from_numpy(history < start)
        batch[ACTION] = torch.from_numpy(self.store.arrays[ACTION][np.minimum(steps, end - 1)])
        batch[ACTION_IS_PAD] = torch.from_numpy(steps >= end)
        return batch

    def __getitem__(self, index: int) -> Batch:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}

    def _gather(self, key: str, frames: np.ndarray) -> torch.Tensor:
        values = torch.from_numpy(np.ascontiguousarray(self.store.arrays[key][frames.ravel()]))
        values = values.reshape(*frames.shape, *values.shape[1:])
        if self.store.features[key].type == "VISUAL":
            return values.movedim(-1, -3)  # (..., H, W, 3) uint8 -> (..., 3, H, W)
        return values


class StepBatches(IterableDataset):
    """The endless stream of training batches, where batch k is a pure function of (seed, k).

    Epoch e is the windows in the order `permutation(seed, e)`, cut into batches; batch k is batch
    k mod n of epoch k // n. A run resumed at step k (`start_step`) therefore continues exactly where it
    stopped, whatever the loader workers or processes. Loader workers produce every W-th batch (PyTorch
    returns them round-robin, so in order); each of R data-parallel processes takes its own slice.
    """

    def __init__(
        self,
        windows: ChunkWindows,
        batch_size: int,
        seed: int,
        augment: Callable[[Batch, torch.Generator], Batch] | None = None,
        probabilities: np.ndarray | None = None,
    ):
        self.windows = windows
        self.batch_size = batch_size
        self.seed = seed
        self.augment = augment  # applied with a generator seeded by (seed, step): resumable
        # each window's sampling probability (drawn with replacement, as WeightedRandomSampler does);
        # None = each epoch is a permutation of the windows
        self.probabilities = probabilities
        self.start_step = 0

    def epoch_order(self, epoch: int, size: int) -> np.ndarray:
        """The `size` windows of epoch `epoch`, in order."""
        rng = np.random.default_rng([self.seed, epoch])
        if self.probabilities is not None:
            return rng.choice(len(self.windows), size=size, p=self.probabilities)
        return np.resize(rng.permutation(len(self.windows)), size)  # wraps if data < batch

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
                order, cached_epoch = self.epoch_order(epoch, per_epoch * per_step), epoch
            start = k * per_step + rank * self.batch_size
            batch = self.windows.__getitems__(order[start : start + self.batch_size])
            if self.augment is not None:
                batch = self.augment(batch, torch.Generator().manual_seed(self.seed * 1_000_003 + step))
            yield batch
            step += n_workers


def collate_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`__getitems__` already returns a collated batch."""
    return batch
