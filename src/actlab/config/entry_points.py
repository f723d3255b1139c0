"""The `main()` of each command that acts with a trained policy (actlab-eval, actlab-serve, actlab-deploy):
the checkpoint's run settings registered as `checkpoint_run` before Hydra composes the command's config,
then the task run with actlab's error reporting (actlab.entry)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import hydra
from omegaconf import DictConfig

from actlab.config.checkpoint import checkpoint_argument, register_checkpoint
from actlab.config.compose import CONFIG_DIR
from actlab.config.ranges import check_ranges
from actlab.config.schema import register_configs
from actlab.entry import run_task


def checkpoint_command(config_name: str, task: Callable[[DictConfig], Any]) -> Callable[[], None]:
    """A console-script `main` that composes `conf/<config_name>.yaml`, checks the ranges of its
    numeric keys (actlab.config.ranges) and runs `task(cfg)`."""
    register_configs()

    @hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=config_name)
    def hydra_main(cfg: DictConfig) -> None:
        run_task(cfg, lambda cfg: (check_ranges(cfg), task(cfg))[1])

    def main() -> None:
        register_checkpoint(checkpoint_argument(sys.argv[1:]))
        hydra_main()

    return main
