"""A checkpoint folder as the start of a command: the entry points that use a trained policy (actlab-eval,
actlab-serve, actlab-deploy) take `checkpoint=<folder>` and the settings of the run that trained it.

The run's settings (from `hyperparameters.json`) are registered in Hydra's ConfigStore before Hydra composes
the entry point's config: model, policy, seed and data paths as `checkpoint_run`, and the run's encoder,
dataset and env as the option `checkpoint` of their groups, each typed by its own option's schema (chosen by
the saved `name`, `format` or `type`). The entry point's defaults list them, so the command line overrides
them as usual (`env.final_eval_episodes=100`, `policy.precision=bf16`, `model.n_action_steps=1`, sweeps with
`-m`), and `env=lift` or `dataset=lerobot` picks another option of the group instead. A folder without a
training run (a LeRobot pretrained folder, a bare policy folder) brings only its architecture.
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore

from actlab.config.checkpoint_files import not_a_file
from actlab.config.datasets import LeRobotDatasetConfig, saved_dataset_config
from actlab.config.encoders import ResNet18EncoderConfig
from actlab.config.envs import NoEnvConfig, env_config
from actlab.config.options import SCHEMAS, typed
from actlab.config.policy import ARCHITECTURE_KEYS
from actlab.config.schema import ModelConfig, PolicyRuntimeConfig
from actlab.errors import ActlabError
from actlab.io import read_json

RUN_GROUPS = ("encoder", "dataset", "env")  # stored as the option `checkpoint` of their config group


def checkpoint_run_config(folder: Path) -> dict[str, Any]:
    """The settings the checkpoint's training run used, as far as evaluation needs them: plain values for
    `checkpoint_run` and typed nodes for the groups of RUN_GROUPS. Keys an older run saved that its
    options' schemas lack (older versions saved every key of every option) are left out."""
    hyperparameters = folder / "hyperparameters.json"
    if hyperparameters.exists() or hyperparameters.is_symlink():
        run = read_run_settings(hyperparameters)
        encoder = run.get("encoder", {})
        return {
            "model": known(ModelConfig, run.get("model", {})),
            "policy": known(PolicyRuntimeConfig, run.get("policy", {})),
            "seed": run.get("seed", 1000),
            "paths": {k: v for k, v in run.get("paths", {}).items() if k in ("data_dir", "cache_dir")},
            "encoder": typed(SCHEMAS["encoder"][encoder.get("name", "resnet18")], encoder, "encoder"),
            "dataset": saved_dataset_config(run.get("dataset", {})),
            "env": env_config(run.get("env", {})),
        }
    config = folder / "config.json"
    check_regular_file(config)
    data = json.loads(config.read_text()) if config.is_file() else {}
    architecture = {k: data[k] for k in ARCHITECTURE_KEYS if k in data}
    return {"model": {"name": "checkpoint", **architecture}, **empty_run()}


def read_run_settings(path: Path) -> dict[str, Any]:
    """hyperparameters.json of a checkpoint: the JSON object of the run's settings, or one line naming the
    file. (A folder without one, such as a LeRobot policy folder, is a policy without a training run.)"""
    if not path.is_file():  # a named pipe would block the read for ever
        raise ActlabError(f"{path}: {not_a_file(path)}; expected the training run's settings (JSON)")
    return read_json(path, " of the training run's settings", "the checkpoint is damaged")


def check_regular_file(config: Path) -> None:
    """config.json, when something stands there, is a regular file: a named pipe would block its read."""
    if (config.exists() or config.is_symlink()) and not config.is_file():
        raise ActlabError(f"{config}: {not_a_file(config)}; expected a policy config (JSON)")


def empty_run() -> dict[str, Any]:
    """The groups of a checkpoint without a training run (or of no checkpoint)."""
    return {"encoder": ResNet18EncoderConfig(), "dataset": LeRobotDatasetConfig(name="none"), "env": NoEnvConfig()}


def known(schema: type, values: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(schema)}
    return {k: v for k, v in values.items() if k in names}


def register_checkpoint(checkpoint: str | None) -> None:
    """Stores the checkpoint's run settings as the `checkpoint_run` config and its groups' `checkpoint`
    options. A checkpoint whose policy cannot be read stores none of its settings, and the command reports
    it when it loads the policy. A hyperparameters.json that is there but is not a JSON object of settings
    (corrupt, a list, a named pipe), or that is missing from an actlab training checkpoint (a bare policy
    folder, such as LeRobot's, legitimately has none), is one line here (ActlabError), before Hydra composes
    anything."""
    node: dict[str, Any] = {}
    if checkpoint:
        folder = Path(checkpoint).expanduser()
        hyperparameters = folder / "hyperparameters.json"
        if hyperparameters.exists() or hyperparameters.is_symlink():
            read_run_settings(hyperparameters)
        elif (folder / "training_state.pt").exists():  # an actlab training checkpoint always has one
            raise ActlabError(
                f"{hyperparameters} is missing: {folder} is an actlab training checkpoint without the settings of "
                "its run (the checkpoint is damaged); use another checkpoint of the run"
            )
        check_regular_file(folder / "config.json")
        try:
            node = checkpoint_run_config(folder)
        except (OSError, ValueError, TypeError, KeyError, ActlabError):
            node = {}
    node = {**empty_run(), **node}
    for group in RUN_GROUPS:
        ConfigStore.instance().store(group=group, name="checkpoint", node=node.pop(group))
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


def run_checkpoint(argv: list[str]) -> list[str]:
    """`argv` with `checkpoint=<run dir>` (a training run's directory rather than one of its checkpoint
    folders) made `checkpoint=<run dir>/checkpoints/best`, which is said on stderr. Other values are kept."""
    value = checkpoint_argument(argv)
    if value is None:
        return argv
    run = Path(value).expanduser()
    if not (run / "checkpoints").is_dir() or (run / "config.json").exists():
        return argv
    best = run / "checkpoints" / "best"
    if not best.is_dir():
        present = sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir() and not p.name.startswith("."))
        raise ActlabError(
            f"checkpoint={value} is a run directory without checkpoints/best; pass one of its checkpoints: "
            f"{', '.join(f'{value}/checkpoints/{name}' for name in present) or 'none yet'}"
        )
    print(f"checkpoint={value} is a run directory: using its best checkpoint, {best}", file=sys.stderr)
    last = max(i for i, a in enumerate(argv) if a.startswith("checkpoint="))
    return [*argv[:last], f"checkpoint={best}", *argv[last + 1 :]]
