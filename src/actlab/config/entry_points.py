"""The `main()` of each command that acts with a trained policy (actlab-eval, actlab-serve, actlab-deploy):
the checkpoint's run settings registered as `checkpoint_run` before Hydra composes the command's config,
then the task run with actlab's error reporting (actlab.entry)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from actlab.config.checkpoint import checkpoint_argument, register_checkpoint, run_checkpoint
from actlab.config.command import hydra_command
from actlab.config.compose import CONFIG_DIR, check_command_config
from actlab.config.schema import register_configs
from actlab.entry import report_error, run_task
from actlab.errors import ActlabError

API_KEY_ENV = "ACTLAB_API_KEY"
SECRETS = ("serve.api_key", "policy.api_key")  # overrides whose values never reach what a run writes


def take_secrets(argv: list[str]) -> list[str]:
    """`argv` without the overrides that carry an API key (`serve.api_key=...`, `policy.api_key=...`): their
    value moves to $ACTLAB_API_KEY of this process, where the commands read it, so Hydra never sees it and
    neither `.hydra/` (config.yaml, overrides.yaml, hydra.yaml) nor the log holds it."""
    kept = []
    for arg in argv:
        key, _, value = arg.lstrip("+~").partition("=")
        if key in SECRETS and value:
            os.environ[API_KEY_ENV] = value.strip("'\"")
        else:
            kept.append(arg)
    return kept


def api_key(value: str | None, key_file: str | None = None) -> str | None:
    """The API key: a value in the config, else the first line of `key_file`, else $ACTLAB_API_KEY."""
    if value:
        return value
    if key_file:
        from actlab.errors import ActlabError

        try:
            lines = Path(key_file).expanduser().read_text().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ActlabError(f"api_key_file={key_file}: cannot be read ({type(e).__name__})") from None
        if not lines or not lines[0].strip():
            raise ActlabError(f"api_key_file={key_file}: empty; expected the key on its first line")
        return lines[0].strip()
    return os.environ.get(API_KEY_ENV) or None


def checkpoint_command(config_name: str, task: Callable[[DictConfig], Any]) -> Callable[[], None]:
    """A console-script `main` that composes `conf/<config_name>.yaml`, checks the ranges of its
    numeric keys and its `policy` choices (actlab.config.compose.check_command_config) and runs `task(cfg)`."""
    register_configs()

    @hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=config_name)
    def hydra_main(cfg: DictConfig) -> None:
        run_task(cfg, lambda cfg: (check_command_config(cfg), task(cfg))[1])

    def main() -> None:
        sys.argv[1:] = take_secrets(sys.argv[1:])
        try:
            sys.argv[1:] = run_checkpoint(sys.argv[1:])  # a run directory: its checkpoints/best
            register_checkpoint(checkpoint_argument(sys.argv[1:]))
        except ActlabError as e:  # a checkpoint that lies about its run: nothing composed or written yet
            report_error(f"error: {e}")
            sys.exit(2)
        with hydra_command():
            hydra_main()

    return main
