"""The policy a command acts with: the checkpoint folder of `checkpoint=` (actlab's or LeRobot's) on a
device, with the run's inference settings (`policy.precision`, `policy.compile`, and the model keys that
may change after training, `model.n_action_steps` and `model.temporal_ensemble_coeff`); with
`policy.runtime=onnx`, its chunks computed by ONNX Runtime from an ONNX export of it (actlab.policy.onnx_backend)."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from actlab.config.policy import ARCHITECTURE_KEYS, INFERENCE_KEYS, check_architecture
from actlab.errors import ActlabError
from actlab.policy.onnx_backend import OnnxChunks, check_agreement
from actlab.policy.policy import ACTPolicy


def load_policy(cfg: DictConfig, device: str = "auto", onnx: str | Path | None = None):
    """The checkpoint's policy on `device`, with `policy.precision`, `policy.compile` and the inference
    model keys of `cfg` applied. With `policy.runtime=onnx`: the policy on the CPU, its chunks computed by
    ONNX Runtime (`policy.onnx_providers`) from the export folder `policy.onnx` (or `onnx`, where the caller
    exported it)."""
    folder = Path(cfg.checkpoint).expanduser()
    if not folder.is_dir():
        raise ActlabError(
            f"checkpoint={cfg.checkpoint}: no such folder; expected a checkpoint folder (checkpoints/best, last, "
            "final or step_N of a run) or a LeRobot ACT pretrained folder"
        )
    if cfg.policy.get("runtime", "torch") == "onnx":
        onnx = cfg.policy.onnx or onnx
        if not onnx:
            raise ActlabError("policy.runtime=onnx needs policy.onnx=<folder of actlab-export format=onnx>")
        policy = ACTPolicy.from_pretrained(folder, "cpu", precision="fp32")
        apply_inference_settings(policy, cfg.model)
        backend = OnnxChunks(onnx, policy.config, list(cfg.policy.onnx_providers))
        check_agreement(policy, backend)
        return policy.use_chunk_backend(backend)
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
