"""Reading a user-supplied weights file: one line for a missing or unreadable file, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from actlab.errors import ActlabError


def read_weights_file(weights: str | Path) -> Any:
    """The contents of `encoder.weights`: a .safetensors file, or a torch checkpoint loaded with
    `weights_only=True` (no arbitrary unpickling)."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ActlabError(f"encoder.weights={weights}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unreadable, truncated or unsafe pickle: one line either way
        raise ActlabError(f"encoder.weights={weights}: cannot be read as a checkpoint ({e})") from None
