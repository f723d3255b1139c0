"""The policy a command acts with: the checkpoint folder of `checkpoint=` (actlab's or LeRobot's) on a
device, with the run's inference settings (`policy.precision`, `policy.compile`, and the model keys that
may change after training, `model.n_action_steps` and `model.temporal_ensemble_coeff`)."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from actlab.config.policy import ARCHITECTURE_KEYS, INFERENCE_KEYS, check_architecture
from actlab.errors import ActlabError
from actlab.policy.policy import ACTPolicy


def load_policy(cfg: DictConfig, device: str = "auto"):
    """The checkpoint's policy on `device`, with `policy.precision`, `policy.compile` and the inference
    model keys of `cfg` applied."""
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
    for key in ARCHITECTURE_KEYS:
        if key in INFERENCE_KEYS or key not in model:
            continue
        if model[key] != getattr(policy.config, key):
            raise ActlabError(
                f"model.{key}={model[key]} but the checkpoint's policy has {getattr(policy.config, key)}; "
                f"only {', '.join('model.' + k for k in INFERENCE_KEYS)} can change at evaluation"
            )
    for key in INFERENCE_KEYS:
        if key in model:
            setattr(policy.config, key, model[key])
    check_architecture(policy.config)
    policy.reset()
