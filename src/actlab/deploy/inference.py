"""Running a policy's inference on one thread, whatever thread asks for it.

PyTorch's CPU kernels run on an OpenMP thread team owned by the thread that calls them. A second calling
thread gets a second team, and with more OpenMP threads than cores libgomp stops its workers' busy-waiting
between parallel regions: measured on 2 cores, a `model=baseline` chunk (2 cameras 96x96) takes 30 ms from
the thread that built the policy and 38 ms from any other. So the server answers every request on the
thread that loaded the policy (the main thread) and runs the network on another.

The control loop asks for chunks on a `WorkerThread`: a daemon thread of its own, so that a request that
hangs (a silent server) can neither block a tick nor keep the process from exiting.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class SameThreadExecutor:
    """`submit` from any thread; the calls run, in order, on the thread that calls `run_until`."""

    def __init__(self) -> None:
        self.calls: queue.Queue = queue.Queue()

    def submit(self, fn: Callable, *args: Any) -> Future:
        future: Future = Future()
        self.calls.put((future, fn, args))
        return future

    def run_until(self, stop: threading.Event, poll: float = 0.05) -> None:
        """Runs submitted calls until `stop` is set (checked every `poll` seconds while idle)."""
        while not stop.is_set():
            try:
                future, fn, args = self.calls.get(timeout=poll)
            except queue.Empty:
                continue
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as e:  # noqa: BLE001 - handed to the caller, as a ThreadPoolExecutor does
                future.set_exception(e)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        while cancel_futures:
            try:
                self.calls.get_nowait()[0].cancel()
            except queue.Empty:
                break


class WorkerThread(SameThreadExecutor):
    """`submit` from any thread; the calls run, in order, on a daemon thread of their own."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run_until, args=(self.stop,), name=name, daemon=True)
        self.thread.start()

    def shutdown(self, wait: bool = True, cancel_futures: bool = False, timeout: float | None = None) -> None:
        """Stops taking calls (cancels those not started, with `cancel_futures`) and waits up to `timeout`
        seconds for the one running, if any."""
        self.stop.set()
        super().shutdown(cancel_futures=cancel_futures)
        if wait:
            self.thread.join(timeout)
