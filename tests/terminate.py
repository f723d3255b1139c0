"""Lightning callbacks for tests that stop a run with SIGTERM: the process sends itself SIGTERM during the
first validation batch after a given step (a moment a test could not hit from outside), or holds training
at a step until a SIGTERM sent from outside has arrived (so a fast run cannot finish before the test, slow
to read its output on a loaded machine, sends the signal)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import lightning as L


class TerminateDuringValidation(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        if not trainer.sanity_checking and trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGTERM)
            self.step = 1 << 30


class WaitForSignalAt(L.Callback):
    """At the end of `step` (after its "Step N/M" line), waits until the run has received SIGTERM or, under
    submitit, the requeue signal; none within `timeout` seconds fails the run. A resumed or requeued run
    starts after `step` and never waits."""

    def __init__(self, step: int, timeout: float = 300.0) -> None:
        self.step, self.timeout = step, timeout

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step != self.step:
            return
        deadline = time.monotonic() + self.timeout
        while not (
            trainer.received_sigterm or any(c.requeue.requested for c in trainer.callbacks if hasattr(c, "requeue"))
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no signal within {self.timeout} s of step {self.step}")
            time.sleep(0.01)


def signal_at_line(process: subprocess.Popen, marker: str, sig: int = signal.SIGTERM, timeout: float = 600) -> str:
    """Reads a text-mode process's output until a line holding `marker`, sends it `sig`, and returns all of
    its output once it has exited. Nothing is lost: `communicate()` after iterating over `stdout` would
    drop what the text wrapper had already read ahead."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if marker in line:
            process.send_signal(sig)
            break
    lines.append(process.stdout.read())
    process.wait(timeout=timeout)
    return "".join(lines)
