"""`actlab-eval` (and `python eval.py`): the console script's main. It imports only the config layer, so that
`--help` and config errors answer before torch, LeRobot or a simulator is imported; the evaluation itself
(actlab.eval.cli.evaluate) is imported when the config is good."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from actlab.config.entry_points import checkpoint_command


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    from actlab.eval import cli

    return cli.evaluate(cfg)


main = checkpoint_command("eval", evaluate)
