"""The files of a training checkpoint folder (`checkpoints/<name>/`, written by
`actlab.training.checkpoint_io`) and the one-line checks of them that need neither torch nor Lightning, so
that `resume=` with a damaged checkpoint answers before the training stack is imported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actlab.errors import ActlabError
from actlab.io import read_json

TRAINING_STATE = "training_state.pt"
HYPERPARAMETERS = "hyperparameters.json"
POLICY_FILES = ("config.json", "model.safetensors")  # actlab.policy.files: CONFIG_NAME, WEIGHTS_NAME
DAMAGED = "it is damaged or not an actlab checkpoint: resume from another run directory or start afresh"


def check_checkpoint_files(folder: Path) -> dict[str, Any]:
    """The run's settings (returned) are a JSON object and the policy's files are regular files (a named pipe
    would block a read for ever), or one line naming the file; in the order training reads them."""
    settings = load_run_config(folder)
    for name in POLICY_FILES:
        regular_file(folder / name)
    return settings


def load_run_config(checkpoint: Path) -> dict[str, Any]:
    """hyperparameters.json of a training checkpoint: the JSON object of its run's settings, or one line."""
    return read_json(regular_file(Path(checkpoint) / HYPERPARAMETERS), " of the run's settings", DAMAGED)


def regular_file(path: Path) -> Path:
    """`path`, when it is a regular file; a missing one, or a named pipe (whose read would block for ever), a
    directory or a device in its place, is one line."""
    if not path.is_file():
        raise ActlabError(f"{path}: {not_a_file(path)}; {DAMAGED}")
    return path


def not_a_file(path: Path) -> str:
    """What stands at `path` instead of a regular file."""
    if path.is_fifo():
        return "a named pipe, not a regular file"
    if path.is_dir():
        return "a directory, not a regular file"
    if not path.exists():
        return "a broken symbolic link" if path.is_symlink() else "missing"
    return "not a regular file"
