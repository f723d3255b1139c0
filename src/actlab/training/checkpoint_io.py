"""Checkpoints as folders, through Lightning's CheckpointIO plugin:

    config.json          the policy's config (ACTPolicy.from_pretrained reads this folder alone)
    model.safetensors    policy weights and normalisation statistics
    hyperparameters.json the resolved run config
    training_state.pt    optimiser, scheduler, loop counters, callback and RNG state (weights_only-safe)

A folder is written and published through `actlab.io.atomic_dir`: under a temporary name, fsynced, then
renamed into place (swapped atomically with the folder it replaces), so a run killed at any moment leaves
every checkpoint folder loadable and `last/` present once it has been written.

Folders saved at the same global step (`step_N`, `last`, `best`, `final` often coincide) share their
byte-identical files as hard links, so a large model's weights and optimiser state are stored once.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import CheckpointIO

from actlab.config.checkpoint_files import DAMAGED, HYPERPARAMETERS, TRAINING_STATE, regular_file
from actlab.config.policy import ACTPolicyConfig
from actlab.errors import ActlabError, reason
from actlab.io import atomic_dir
from actlab.policy.policy import WEIGHTS_NAME, read_weights, write_policy_files

MODULE_PREFIX = "policy."  # the LightningModule's attribute holding the policy


class FolderCheckpointIO(CheckpointIO):
    def __init__(self) -> None:
        self._previous: tuple[int, Path] | None = None  # (global step, folder) of the last save

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        state = dict(checkpoint)
        policy_config = ACTPolicyConfig.from_dict(state.pop("policy_config"))
        run_config = state.pop("run_config", {})
        weights = {k.removeprefix(MODULE_PREFIX): v for k, v in state.pop("state_dict").items()}

        step = state.get("global_step")
        with atomic_dir(path, replace=True) as tmp:
            write_policy_files(tmp, policy_config, weights)
            (tmp / HYPERPARAMETERS).write_text(json.dumps(run_config, indent=2, default=str))
            torch.save(state, tmp / TRAINING_STATE)
            if self._previous is not None and self._previous[0] == step:
                share_identical_files(tmp, self._previous[1])
        self._previous = (step, path)

    def load_checkpoint(
        self, path: str | Path, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        path = Path(path)
        if not (path / TRAINING_STATE).is_file():
            raise ActlabError(f"{path} is not a training checkpoint: {TRAINING_STATE} is missing")
        try:
            state = torch.load(path / TRAINING_STATE, map_location=map_location, weights_only=True)
        except Exception as e:  # noqa: BLE001 - truncated, or a pickle that weights_only refuses
            raise ActlabError(f"{path / TRAINING_STATE}: cannot be read ({reason(e)}); {DAMAGED}") from None
        weights = regular_file(path / WEIGHTS_NAME)
        state["state_dict"] = {MODULE_PREFIX + k: v for k, v in read_weights(weights).items()}
        return state

    def remove_checkpoint(self, path: str | Path) -> None:
        shutil.rmtree(path, ignore_errors=True)


def share_identical_files(folder: Path, other: Path) -> None:
    """Replaces each file of `folder` that is byte-identical to the same-named file of `other` by a hard
    link to it. Best effort: a file system without hard links keeps the copies."""
    for file in folder.iterdir():
        twin = other / file.name
        try:
            if twin.is_file() and twin.stat().st_size == file.stat().st_size and filecmp.cmp(file, twin, False):
                link = file.with_name(f".{file.name}.link")
                os.link(twin, link)
                os.replace(link, file)
        except OSError:
            continue
