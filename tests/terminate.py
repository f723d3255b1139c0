"""A Lightning callback for tests: the process sends itself SIGTERM during the first validation batch after
a given step (SIGTERM at a moment a test could not hit from outside)."""

from __future__ import annotations

import os
import signal

import lightning as L


class TerminateDuringValidation(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        if not trainer.sanity_checking and trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGTERM)
            self.step = 1 << 30
