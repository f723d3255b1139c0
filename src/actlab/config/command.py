"""How every actlab command runs its Hydra main (`with hydra_command(): hydra_main()`).

- A config error is one line, `error: ...`, and exit status 2, as every other config error: Hydra's own
  report of a composition error spans several lines and exits 1 (actlab.config.strict.config_error says
  which errors are config errors and words them). Hydra 1.3 has no hook for that report, so its
  `run_and_report` is wrapped while the main runs; errors out of the task itself keep Hydra's handling.
- Hydra deep-copies its ConfigStore (every registered schema) each time it builds a config repository: twice
  per command, and about a hundred times for `--help`, once per config group it lists (7-8 CPU-seconds on
  the development machine). The store is a process-wide singleton that loading never changes (its `load`
  hands out copies of the nodes), so its copy is the store itself.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from actlab.config.strict import config_error
from actlab.entry import report_error


def share_config_store() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.__deepcopy__ = lambda self, memo: self  # type: ignore[attr-defined]


def from_task(error: BaseException) -> bool:
    """The error came out of the task function (Hydra's `run_job` ran it), not out of composing the config."""
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "run_job":
            return True
        tb = tb.tb_next
    return False


@contextmanager
def hydra_command() -> Iterator[None]:
    """While it is open, a config error that Hydra would report over several lines (and exit 1) is one line,
    `error: ...`, on stderr and exit status 2; and the ConfigStore is shared, not copied."""
    import hydra._internal.utils as hydra_utils

    share_config_store()
    original: Callable[[Any], Any] = hydra_utils.run_and_report

    def run_and_report(func: Callable[[], Any]) -> Any:
        def guarded() -> Any:
            try:
                return func()
            except Exception as e:
                message = None if from_task(e) else config_error(e)
                if message is None:
                    raise
                report_error(f"error: {message}")
                sys.exit(2)

        return original(guarded)

    hydra_utils.run_and_report = run_and_report
    try:
        yield
    finally:
        hydra_utils.run_and_report = original
