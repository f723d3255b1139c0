"""Hydra's Optuna sweeper (hydra-optuna-sweeper), ending a sweep in which no trial completed with one line
(each failed trial's own error is already above it) instead of the plugin's traceback."""

from __future__ import annotations

import sys

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper as PluginSweeper

# What optuna 2.x raises for the best trial of a study without a completed one: in memory, and in an RDB.
NO_COMPLETED_TRIAL = ("No trials are completed", "Record does not exist")


class OptunaSweeper(PluginSweeper):
    def sweep(self, arguments: list[str]) -> None:
        try:
            return super().sweep(arguments)
        except ValueError as e:
            if not str(e).startswith(NO_COMPLETED_TRIAL):
                raise
            print("error: no trial of the sweep completed; each one's error is above", file=sys.stderr)
            sys.exit(2)
