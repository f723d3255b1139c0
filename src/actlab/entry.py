"""What every Hydra entry point (`train.py`, `eval.py`, ...) shares: user errors print one line on
stderr, `error: ...`, and exit with status 2, no traceback; a run that fails before it wrote anything
leaves no run directory behind, one that fails later keeps its directory with the error line at the end
of its log; Ctrl-C exits with status 130, and so does SIGTERM (what `kill`, SLURM and Kubernetes send):
it ends a command as Ctrl-C does (a control loop stops its robot, a run keeps what it saved), except
while Lightning trains, where RunCheckpoints saves `last/` first (`lightning_sigterm`). Hydra's own
composition errors (an unknown option or key, a value of the wrong type) are reported by Hydra, with status 1.

In a sweep (`-m`) a job's error is reported the same way but ends only that job, and the sweep goes on:
under Optuna's sweeper the job fails (the trial is recorded as failed; `max_failure_rate` decides how
many the sweep tolerates), under Hydra's grid sweeper it returns NaN (a failed job would end the grid).
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from actlab.errors import ActlabError, TrainingDiverged

T = TypeVar("T")


class SweepJobFailed(Exception):
    """A sweep job's user error, already reported: the sweeper records the job as failed."""


def run_task(cfg: DictConfig, task: Callable[[DictConfig], T]) -> T:
    """Runs `task(cfg)` inside a Hydra job with actlab's error reporting."""
    quiet_library_logging()
    try:
        with sigterm_as_interrupt():
            check_interpolations(cfg)
            return task(cfg)
    except ActlabError as e:
        hydra = HydraConfig.get()
        if hydra.mode == RunMode.MULTIRUN:
            report_error(f"error: job {hydra.job.num} ({cfg.paths.output_dir}): {e}")
            if "optuna" in str(hydra.sweeper.get("_target_", "")):
                raise SweepJobFailed(str(e)) from None
            return float("nan")  # type: ignore[return-value] - a grid sweep's "this job failed"
        report_error(f"error: {e}")
        if not isinstance(e, TrainingDiverged):
            remove_unused_run_dir(cfg)
        sys.exit(2)
    except KeyboardInterrupt:
        run_dir = Path(cfg.paths.output_dir)
        if (run_dir / "checkpoints" / "last").is_dir():
            report_error(f"interrupted; continue with resume={run_dir}")
        else:
            report_error(interrupted_without_checkpoint(cfg))
            remove_unused_run_dir(cfg)
        sys.exit(130)


def interrupted_without_checkpoint(cfg: DictConfig) -> str:
    """What a Ctrl-C before anything resumable says: for a training run, that there is no checkpoint yet and
    the command that starts it again."""
    if not isinstance(cfg.get("checkpoint"), DictConfig):  # not a training run
        return "interrupted"
    overrides = " ".join(shlex.quote(o) for o in HydraConfig.get().overrides.task)
    every = cfg.checkpoint.save_freq
    when = f"every checkpoint.save_freq={every} steps" if every else "at the end (checkpoint.save_freq=0)"
    return (
        f"interrupted before the first checkpoint (checkpoints/last/ is written {when}): nothing to resume; "
        f"start again with: python train.py {overrides}".rstrip()
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt in the main thread, so `finally` blocks run (a robot is stopped and
    disconnected, simulators close, statistics are written). A handler someone else installed (submitit
    ignores SIGTERM while it requeues) is left alone."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) not in (
        signal.SIG_DFL,
        None,
    ):
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def lightning_sigterm() -> Iterator[None]:
    """Inside `trainer.fit` Lightning's own handler takes SIGTERM (it chains any handler present, so
    `sigterm_as_interrupt`'s is set aside meanwhile): the step in progress ends, `last/` is saved."""
    if signal.getsignal(signal.SIGTERM) is not _interrupt:
        yield
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, _interrupt)


def check_interpolations(cfg: DictConfig) -> None:
    """Every `${...}` of the config resolves (an unset `${oc.env:...}`, a missing key), or one line naming the
    key, before the task starts."""
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except InterpolationResolutionError as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ActlabError(f"{e.full_key}={raw_value(cfg, e.full_key)}: {reason}") from None


def raw_value(cfg: DictConfig, key: str) -> str:
    """The text of `key`'s value as given (its interpolation unresolved)."""
    node = cfg
    try:
        for part in key.split("."):
            node = node._get_node(part)
        return str(node._value())
    except (AttributeError, KeyError, TypeError):
        return "?"


def process_rank() -> int:
    """This process's global rank in a distributed run (0 otherwise), from the variables DDP and SLURM set."""
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def quiet_library_logging() -> None:
    """Lightning installs its own console handler at import; let its records reach Hydra's handlers
    (console and the run's log) once instead, and drop warnings that say nothing about the user's run.
    Processes other than rank 0 keep to warnings: rank 0 speaks for the run."""
    if process_rank() != 0:
        logging.getLogger("actlab").setLevel(logging.WARNING)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*video decoding and encoding capabilities of torchvision.*")


def report_error(message: str) -> None:
    """The one line on stderr, also appended to the run's log file (the console already has it)."""
    print(message, file=sys.stderr)
    record = logging.LogRecord("actlab", logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def remove_unused_run_dir(cfg: DictConfig) -> None:
    """Deletes this run's directory when the run wrote nothing into it (it failed during set-up): what
    is left is only Hydra's `.hydra/` and the log. Never a resumed run's directory, nor a sweep's job."""
    run_dir = Path(cfg.paths.output_dir)
    resume = cfg.get("resume")
    if HydraConfig.get().mode == RunMode.MULTIRUN or (resume and Path(resume).resolve() == run_dir.resolve()):
        return
    if not run_dir.is_dir() or any(p.name != ".hydra" and p.suffix != ".log" for p in run_dir.iterdir()):
        return
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.close()
    shutil.rmtree(run_dir, ignore_errors=True)
    date, outputs = run_dir.parent, run_dir.parent.parent
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", date.name) and outputs.name == "outputs":  # Hydra's default layout
        for parent in (date, outputs):  # when this run made them and they are empty
            try:
                parent.rmdir()
            except OSError:
                break
