"""A Lightning callback for tests: NaN in one batch's actions (or observation.state) from a given step on."""

from __future__ import annotations

import lightning as L


class PoisonBatch(L.Callback):
    def __init__(self, step: int, key: str = "action") -> None:
        self.step, self.key = step, key

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: dict, batch_idx: int):
        if trainer.global_step >= self.step:
            batch[self.key][0] = float("nan")
