"""Requeue under submitit (`hydra/launcher=slurm`, or `submitit_local` on one machine).

Before a job's time limit (`hydra.launcher.signal_delay_s` ahead) or when SLURM preempts it, submitit sends
USR2, and its handler requeues the job and exits at once, wherever training is. Here that handler is held
back to the end of the training step in progress: `checkpoints/last/` is saved first (by RunCheckpoints), then
submitit requeues. The requeued job runs in the same run directory and resumes from that `last/`
(`requeued_checkpoint`). Timeouts are requeued `hydra.launcher.max_num_timeout` times, preemptions always.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Any

log = logging.getLogger("actlab")

REQUEUE_SIGNAL = signal.SIGUSR2  # what submitit asks SLURM (and its local executor) to send


def submitit_job() -> bool:
    """Whether this process is a job started by submitit (it exports SUBMITIT_EXECUTOR=slurm or local)."""
    return "SUBMITIT_EXECUTOR" in os.environ


def requeued_checkpoint(output_dir: str | Path) -> Path | None:
    """The run's own `checkpoints/last/` when this is a requeued submitit job. A new run's directory is new,
    so only a job started again in its own directory finds one."""
    last = Path(output_dir) / "checkpoints" / "last"
    if submitit_job() and (last / "training_state.pt").is_file():
        return last
    return None


class Requeue:
    """Holds submitit's USR2 handler back until `requeue()` (called once `last/` is saved)."""

    def __init__(self) -> None:
        self.requested = False
        self._handler: Any = None

    def install(self) -> None:
        """Takes over USR2 if submitit's handler is installed (outside submitit this does nothing)."""
        handler = signal.getsignal(REQUEUE_SIGNAL)
        if callable(handler) and str(getattr(handler, "__module__", "")).startswith("submitit"):
            self._handler = handler
            signal.signal(REQUEUE_SIGNAL, self._note)

    def uninstall(self) -> None:
        if self._handler is not None:
            signal.signal(REQUEUE_SIGNAL, self._handler)
            self._handler = None

    def _note(self, signum: int, frame: Any) -> None:
        self.requested = True
        log.info("Time limit or preemption (USR2): saving checkpoints/last/ at the end of this step, then requeueing")

    def requeue(self) -> None:
        """submitit's handler: on the job's first task it requeues the job and exits (SystemExit); on the
        other tasks it returns."""
        handler, self._handler = self._handler, None
        signal.signal(REQUEUE_SIGNAL, handler)
        handler(REQUEUE_SIGNAL, None)
