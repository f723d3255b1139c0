"""Hydra's Optuna sweeper (hydra-optuna-sweeper), ending a sweep in which no trial completed with one line
(each failed trial's own error is already above it) instead of the plugin's traceback."""

from __future__ import annotations

import sys

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper as PluginSweeper


class OptunaSweeper(PluginSweeper):
    def sweep(self, arguments: list[str]) -> None:
        try:
            return super().sweep(arguments)
        except ValueError as e:
            if "No trials are completed" not in str(e):
                raise
            print("error: no trial of the sweep completed; each one's error is above", file=sys.stderr)
            sys.exit(2)
