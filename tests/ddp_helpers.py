"""Callbacks the scale-out tests add to real `train.py` runs (+callbacks.<name>._target_=tests.ddp_helpers...)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback


class WeightFingerprint(Callback):
    """At the end of training each process writes a hash of its weights to `<folder>/rank<r>.txt`."""

    def __init__(self, folder: str):
        self.folder = Path(folder)

    def on_train_end(self, trainer, pl_module) -> None:
        digest = hashlib.sha256()
        for name, value in sorted(pl_module.policy.state_dict().items()):
            digest.update(name.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"rank{trainer.global_rank}.txt").write_text(digest.hexdigest())


class BatchRecorder(Callback):
    """Each process writes the frames of every training batch it saw to `<folder>/rank<r>.pt`."""

    def __init__(self, folder: str):
        self.folder = Path(folder)
        self.batches: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches.append(batch["action"][:, 0].detach().cpu().clone())

    def on_train_end(self, trainer, pl_module) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.batches, self.folder / f"rank{trainer.global_rank}.pt")
