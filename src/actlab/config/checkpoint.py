"""A checkpoint folder as the start of a command: the entry points that use a trained policy (actlab-eval,
actlab-serve, actlab-deploy) take `checkpoint=<folder>` and the settings of the run that trained it.

The run's settings (model, encoder, dataset, env, policy, seed, data paths, from `hyperparameters.json`)
are registered in Hydra's ConfigStore as `checkpoint_run` before Hydra composes the entry point's config,
which lists it in its defaults: the command line overrides them as usual (`env.final_eval_episodes=100`,
`env=lift`, `policy.precision=bf16`, `model.n_action_steps=1`, sweeps with `-m`). A folder without a
training run (a LeRobot pretrained folder, a bare policy folder) brings only its architecture.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore

from actlab.config.policy import ACTArchitecture
from actlab.config.schema import CheckpointRunConfig

RUN_GROUPS = ("model", "encoder", "dataset", "env", "policy")
INFERENCE_KEYS = ("n_action_steps", "temporal_ensemble_coeff")  # the model keys a trained policy may change


def checkpoint_run_config(folder: Path) -> dict[str, Any]:
    """The settings the checkpoint's training run used, as far as evaluation needs them."""
    hyperparameters = folder / "hyperparameters.json"
    if hyperparameters.is_file():
        run = json.loads(hyperparameters.read_text())
        schema = {f.name: f for f in fields(CheckpointRunConfig)}
        out: dict[str, Any] = {}
        for group in RUN_GROUPS:
            known = {f.name for f in fields(schema[group].default_factory())}
            out[group] = {k: v for k, v in run.get(group, {}).items() if k in known}  # older runs: drop the rest
        out["seed"] = run.get("seed", 1000)
        out["paths"] = {k: v for k, v in run.get("paths", {}).items() if k in ("data_dir", "cache_dir")}
        return out
    config = folder / "config.json"
    data = json.loads(config.read_text()) if config.is_file() else {}
    architecture = {f.name: data[f.name] for f in fields(ACTArchitecture) if f.name in data}
    return {"model": {"name": "checkpoint", **architecture}, "env": {"name": "none"}, "dataset": {"name": "none"}}


def register_checkpoint(checkpoint: str | None) -> None:
    """Stores the checkpoint's run settings as the `checkpoint_run` config; an unreadable checkpoint
    stores nothing, and `evaluate` reports it."""
    node: dict[str, Any] = {}
    if checkpoint:
        try:
            node = checkpoint_run_config(Path(checkpoint).expanduser())
        except (OSError, ValueError):
            node = {}
    ConfigStore.instance().store(name="checkpoint_run", node=node)


def checkpoint_argument(argv: list[str]) -> str | None:
    """The value of `checkpoint=...` on a command line, parsed as Hydra parses overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    candidates = [a for a in argv if a.startswith("checkpoint=")]
    if not candidates:
        return None
    try:
        value = OverridesParser.create().parse_overrides(candidates[-1:])[0].value()
    except Exception:  # noqa: BLE001 - Hydra reports a malformed override itself
        return None
    return value if isinstance(value, str) else None
