"""Simulators in worker processes: an object built in a spawned process and driven over a pipe.

Rendering a simulator is single-threaded CPU work, so evaluation rollouts and demonstration recording run
one simulator per worker process. `Worker(what, build, *args)` builds `build(*args)` in a fresh interpreter;
`submit(method, *args)` returns at once, so every worker runs at the same time, and `result()` waits for
the answer (a failure in the worker comes back as one ActlabError line).
"""

from __future__ import annotations

import multiprocessing as mp
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from actlab.errors import ActlabError


class Worker:
    def __init__(self, what: str, build: Callable[..., Any], *args: Any):
        """`what` names the worker in errors ("an evaluation worker"); `build` must be importable by name."""
        self.what = what
        context = mp.get_context("spawn")  # a fresh interpreter: no forked torch threads or GL contexts
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, what, build, args), daemon=True)
        self.process.start()
        child.close()

    def submit(self, method: str, *args: Any) -> None:
        self.conn.send((method, args))

    def result(self) -> Any:
        try:
            status, value = self.conn.recv()
        except EOFError:
            raise ActlabError(f"{self.what} process died (exit code {self.process.exitcode})") from None
        if status == "error":
            raise ActlabError(value)
        return value

    def close(self) -> None:
        """Stops the worker (its object's `close()` runs first, when it has one)."""
        try:
            self.conn.send(("close", ()))
            self.conn.recv()
        except (OSError, EOFError):
            pass
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.kill()


class InProcess:
    """An object in this process behind a worker's submit/result calls (its `close` is the caller's business)."""

    def __init__(self, target: Any):
        self.target, self._result = target, None

    def submit(self, method: str, *args: Any) -> None:
        self._result = getattr(self.target, method)(*args)

    def result(self) -> Any:
        return self._result

    def close(self) -> None:
        pass


def start_workers(count: int, what: str, build: Callable[..., Any], *args: Any) -> list[Worker]:
    """`count` workers, each with its own `build(*args)` (built in parallel); all stopped if one fails."""
    workers = [Worker(what, build, *args) for _ in range(count)]
    try:
        for worker in workers:
            worker.result()  # built, or the error that stopped it
    except ActlabError:
        for worker in workers:
            worker.close()
        raise
    return workers


def _serve(conn: Connection, what: str, build: Callable[..., Any], args: tuple) -> None:
    """A worker process: builds its object, then answers the parent's calls until `close`."""
    import torch

    # Ctrl-C reaches the whole process group: the parent handles it and closes its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    try:
        target = build(*args)
        conn.send(("ok", None))
    except Exception as e:  # noqa: BLE001 - reported to the parent as one line
        conn.send(("error", str(e)))
        return
    while True:
        try:
            method, args = conn.recv()
        except EOFError:  # the parent is gone
            return
        if method == "close":
            close = getattr(target, "close", None)
            if close is not None:
                close()
            conn.send(("ok", None))
            return
        try:
            conn.send(("ok", getattr(target, method)(*args)))
        except Exception as e:  # noqa: BLE001 - reported to the parent as one line
            conn.send(("error", f"{what}: {e}"))
