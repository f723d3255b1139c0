"""Tests marked `alone` assert a real-time loop's deadlines or wall-time bounds. Under pytest-xdist they run
with no test of another worker beside them: two busy workers on a 2-core machine can starve a loop (or the
server it asks) for a whole period, and a missed deadline would then say nothing about the loop.

Every test holds a shared lock on a file of this test run while it runs (set-up and teardown included, so
module fixtures that start commands count); an `alone` test holds it exclusively. A turnstile, held by
the `alone` test while it waits, keeps the other workers from starting new tests in the meantime, so it
waits for their running tests only."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def machine_share(folder: Path | None, exclusive: bool) -> Iterator[None]:
    """Hold the run's lock in `folder` (shared by the workers; None: one process, nothing to share)."""
    if folder is None:
        yield
        return
    with open(folder / "machine.turnstile", "a") as turnstile, open(folder / "machine.lock", "a") as lock:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        yield  # closing the file releases the lock
