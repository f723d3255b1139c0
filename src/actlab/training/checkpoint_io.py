"""Checkpoints as folders, through Lightning's CheckpointIO plugin:

    config.json          the policy's config (ACTPolicy.from_pretrained reads this folder alone)
    model.safetensors    policy weights and normalisation statistics
    hyperparameters.json the resolved run config
    training_state.pt    optimiser, scheduler, loop counters, callback and RNG state (weights_only-safe)

A folder is written and published through `actlab.io.atomic_dir`: under a temporary name, fsynced, then
renamed into place (swapped atomically with the folder it replaces), so a run killed at any moment leaves
every checkpoint folder loadable and `last/` present once it has been written.

Folders saved at the same global step (`step_N`, `last`, `best`, `final` often coincide) share their
byte-identical files: a file whose bytes equal those of the same file in the folder saved just before, at
the same step, is hard-linked to it instead of written again, so a large model's weights and optimiser
state are written and stored once.
"""

from __future__ import annotations

import io
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
from actlab.policy.files import CONFIG_NAME, WEIGHTS_NAME, read_weights, weights_bytes

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
        twin = self._previous[1] if self._previous is not None and self._previous[0] == step else None
        with atomic_dir(path, replace=True) as tmp:
            policy_config.save(tmp / CONFIG_NAME)
            write_or_link(tmp / WEIGHTS_NAME, weights_bytes(weights), twin)
            (tmp / HYPERPARAMETERS).write_text(json.dumps(run_config, indent=2, default=str))
            training_state = io.BytesIO()
            torch.save(state, training_state)
            write_or_link(tmp / TRAINING_STATE, training_state.getbuffer(), twin)
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


def write_or_link(path: Path, data: bytes | memoryview, twin: Path | None) -> None:
    """Writes `data` to `path`; or, when the folder `twin` holds a same-named file with exactly these bytes,
    hard-links that file instead (a file system without hard links gets the write)."""
    if twin is not None and same_bytes(twin / path.name, data):
        try:
            os.link(twin / path.name, path)
            return
        except OSError:
            pass
    path.write_bytes(data)


def same_bytes(path: Path, data: bytes | memoryview, chunk: int = 1 << 24) -> bool:
    """Whether the regular file at `path` holds exactly `data` (read in chunks: no second copy in memory)."""
    try:
        if not path.is_file() or path.stat().st_size != len(data):
            return False
        view = memoryview(data)
        with open(path, "rb") as f:
            return all(f.read(chunk) == view[start : start + chunk] for start in range(0, len(view), chunk))
    except OSError:
        return False
