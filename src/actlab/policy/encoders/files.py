"""Weights files: reading one a user supplies, and the one-line messages when pretrained weights can be
neither found in their library's cache nor downloaded. Never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from actlab.config.encoders import check_weights_file
from actlab.errors import ActlabError, reason


def read_weights_file(weights: str | Path) -> Any:
    """The contents of `encoder.weights`: a .safetensors file, or a torch checkpoint loaded with
    `weights_only=True` (no arbitrary unpickling)."""
    path = check_weights_file(weights)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unreadable, truncated or unsafe pickle: one line either way
        raise ActlabError(f"encoder.weights={weights}: cannot be read as a checkpoint ({reason(e)})") from None


OFFLINE = "HF_HUB_OFFLINE is set, so nothing is downloaded"


def hub_offline() -> bool:
    """HF_HUB_OFFLINE, the ecosystem's switch for "no downloads" (read as huggingface_hub reads it)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def missing_weights(what: str, where: str, url: str, why: str, copy_to: Path | None = None) -> str:
    """One line: which weights are missing, where they were looked for, why they were not fetched, and the
    three ways out (connect once, copy the file, random init)."""
    copy = f"copy it to {copy_to} (or pass encoder.weights=FILE)" if copy_to else "pass encoder.weights=FILE"
    return (
        f"{what} are not {where} and {why}; ways out: connect to the internet once (the file is then cached for "
        f"later runs), or download {url} elsewhere and {copy}, or set encoder.pretrained=null for random init"
    )
