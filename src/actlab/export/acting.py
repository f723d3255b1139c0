"""The policy `actlab-eval`, `actlab-serve` and `actlab-deploy` act with: `load_policy` (actlab.policy.loader),
and with `policy.runtime=onnx` but no `policy.onnx=<folder>`, the checkpoint exported first into the run
directory's `onnx/` by `actlab-export`'s own code, with its parity check against PyTorch."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from actlab.export.onnx import TOLERANCE, export_onnx
from actlab.policy.loader import load_policy

log = logging.getLogger("actlab")

EXPORT_DIR = "onnx"  # under the command's run directory


def load_acting_policy(cfg: DictConfig, device: str = "auto"):
    """`load_policy(cfg, device)`, exporting the checkpoint to ONNX first where `policy.runtime=onnx` needs it."""
    policy_cfg = cfg.policy
    if policy_cfg.get("runtime", "torch") != "onnx":
        return load_policy(cfg, device)
    folder = policy_cfg.onnx
    if not folder:
        folder = Path(cfg.paths.output_dir) / EXPORT_DIR
        log.info(f"policy.runtime=onnx: exporting {cfg.checkpoint} to {folder} (policy.onnx=<folder> reuses one)")
        check = export_onnx(cfg.checkpoint, folder)
        log.info(
            f"Exported and checked: ONNX Runtime vs PyTorch fp32 on {check.random + check.dataset} observations, max "
            f"|action difference| {check.diff:.1e} (limit {TOLERANCE:.0e})"
        )
    policy = load_policy(cfg, device, onnx=folder)
    providers = ", ".join(policy.chunk_backend.providers)
    log.info(f"Action chunks from ONNX Runtime ({providers}) running {Path(folder) / 'policy.onnx'}")
    return policy
