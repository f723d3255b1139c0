"""The two files of a policy folder: `config.json` (actlab.config.policy.ACTPolicyConfig) and
`model.safetensors` (weights and normalisation statistics), read and checked with one-line errors."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import Tensor

from actlab.config.policy import ACTPolicyConfig
from actlab.errors import ActlabError, reason

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def read_weights(path: Path, device: str = "cpu") -> dict[str, Tensor]:
    """A safetensors file of weights; a missing, truncated or foreign file is one line."""
    if not path.is_file():
        raise ActlabError(f"{path} is missing")
    try:
        return load_file(path, device=device)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise ActlabError(f"{path}: cannot be read ({reason(e)})") from None


def check_weights(expected: dict[str, Tensor], weights: dict[str, Tensor], source: Path) -> None:
    """Every key of `expected` in `weights` with the same shape, and nothing else."""
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    wrong = [k for k in expected if k in weights and weights[k].shape != expected[k].shape]
    if wrong:
        k = wrong[0]
        raise ActlabError(
            f"{source}: '{k}' has shape {list(weights[k].shape)} but the policy in config.json expects "
            f"{list(expected[k].shape)}; the weights and config.json come from different models"
        )
    if missing or unexpected:
        example = f"missing e.g. '{missing[0]}'" if missing else f"unexpected e.g. '{unexpected[0]}'"
        raise ActlabError(
            f"{source}: {len(missing)} missing and {len(unexpected)} unexpected keys ({example}); the weights and "
            "config.json come from different models"
        )


def write_policy_files(directory: Path, config: ACTPolicyConfig, state_dict: dict[str, Tensor]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    config.save(directory / CONFIG_NAME)
    save_file({k: v.detach().contiguous().cpu() for k, v in state_dict.items()}, directory / WEIGHTS_NAME)
