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

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from actlab.config.schema import CheckpointRunConfig
from actlab.errors import ActlabError
from actlab.policy.config import ACTArchitecture, check_architecture

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


def load_policy(cfg: DictConfig, device: str = "auto"):
    """The checkpoint's policy on `device`, with `policy.precision`, `policy.compile` and the inference
    model keys of `cfg` applied."""
    from actlab.policy import ACTPolicy

    folder = Path(cfg.checkpoint).expanduser()
    if not folder.is_dir():
        raise ActlabError(
            f"checkpoint={cfg.checkpoint}: no such folder; expected a checkpoint folder (checkpoints/best, last, "
            "final or step_N of a run) or a LeRobot ACT pretrained folder"
        )
    policy = ACTPolicy.from_pretrained(
        folder, resolve_device(device), precision=cfg.policy.precision, compile=cfg.policy.compile
    )
    apply_inference_settings(policy, cfg.model)
    return policy


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ActlabError(f"device={device!r}; expected auto, cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ActlabError(f"device={device} but no CUDA GPU is visible here; use cpu")
    return device


def apply_inference_settings(policy, model: DictConfig) -> None:
    """`model.n_action_steps` and `model.temporal_ensemble_coeff` change how the policy acts; any other
    model key must be the checkpoint's (it would not fit the weights)."""
    for f in fields(ACTArchitecture):
        if f.name in INFERENCE_KEYS or f.name not in model:
            continue
        if model[f.name] != getattr(policy.config, f.name):
            raise ActlabError(
                f"model.{f.name}={model[f.name]} but the checkpoint's policy has {getattr(policy.config, f.name)}; "
                f"only {', '.join('model.' + k for k in INFERENCE_KEYS)} can change at evaluation"
            )
    for key in INFERENCE_KEYS:
        if key in model:
            setattr(policy.config, key, model[key])
    check_architecture(policy.config)
    policy.reset()
