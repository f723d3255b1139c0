"""The LightningModule: optimiser groups, learning-rate schedule, logging. No model logic lives here."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.optim.lr_scheduler import LambdaLR

from actlab.config.schema import OptimizerConfig, SchedulerConfig
from actlab.errors import TrainingDiverged
from actlab.policy import ACTPolicy
from actlab.policy.policy import WEIGHTS_NAME, check_weights
from actlab.training.clipping import CLIP_EPS, clip_in_update, forget_grad_scale, total_norm

BACKBONE_PREFIX = "model.backbone."


def param_groups(policy: ACTPolicy, lr: float, lr_backbone: float) -> list[dict[str, Any]]:
    """Trainable parameters in two groups: the image backbone, whichever encoder it is (its own lr), and
    everything else. Frozen parameters are left out of the optimiser."""
    trainable = [(n, p) for n, p in policy.named_parameters() if p.requires_grad]
    backbone = [p for n, p in trainable if n.startswith(BACKBONE_PREFIX)]
    rest = [p for n, p in trainable if not n.startswith(BACKBONE_PREFIX)]
    groups = [{"params": rest, "lr": lr, "name": "policy"}]
    if backbone:
        groups.append({"params": backbone, "lr": lr_backbone, "name": "backbone"})
    return groups


def lr_factor(step: int, cfg: SchedulerConfig, max_steps: int) -> float:
    """Linear warm-up over `warmup_steps`, then constant or cosine decay to `min_lr_ratio`."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.name == "constant":
        return 1.0
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, max_steps - cfg.warmup_steps))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class ACTLightningModule(L.LightningModule):
    def __init__(
        self,
        policy: ACTPolicy,
        optimizer: OptimizerConfig,
        scheduler: SchedulerConfig,
        max_steps: int,
        run_config: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.policy = policy
        self.optimizer_cfg = optimizer
        self.scheduler_cfg = scheduler
        self.max_steps = max_steps
        self.run_config = run_config or {}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses = self.policy(batch)
        self.check_finite(losses)
        batch_size = len(batch["action"])
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, batch_size=batch_size)
        self.log("lr", self.lr_schedulers().get_last_lr()[0], batch_size=batch_size)
        return losses["loss"]

    def check_finite(self, losses: dict[str, torch.Tensor]) -> None:
        """Stops training at the first loss that is NaN or infinite, naming the step and the term, before it
        reaches the weights. Lightning 2 has no `terminate_on_nan` any more; `detect_anomaly` traces every
        backward (slow) and ends in a traceback, and EarlyStopping(check_finite=True) only looks at a monitored
        metric when validation runs. All processes of a distributed run take the same decision
        (`reduce_boolean_decision`), so none is left waiting for the others."""
        finite = bool(torch.isfinite(losses["loss"]).all())
        if self.trainer.strategy.reduce_boolean_decision(finite, all=True):
            return
        terms = ", ".join(f"{k}={v.item():g}" for k, v in losses.items())
        bad = [k for k, v in losses.items() if k != "loss" and not bool(torch.isfinite(v).all())] or ["loss"]
        where = f"the loss term '{bad[0]}' is not finite" if not finite else "a loss of another process is not finite"
        raise TrainingDiverged(
            f"training stopped at step {self.global_step}: {where} ({terms}); "
            "check the data for NaN/inf or lower model.optimizer.lr"
        )

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        # In eval mode the latent is zero, as at inference: this is the action prediction error.
        losses = self.policy(batch)
        self.log("val/loss", losses[self.policy.loss_key], batch_size=len(batch["action"]), sync_dist=True)

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None, gradient_clip_algorithm=None
    ) -> None:
        """Clips the gradients' total norm to `trainer.gradient_clip_val` (Lightning's default, with the norm it
        computes kept) and logs that norm, before clipping, on the steps whose metrics reach the loggers.

        On a CPU, where reading the norm costs no device sync, the gradients are scaled only on the steps that
        clip (`clip_grad_norm_` multiplies them all by a coefficient clamped to 1 on every step), and then by
        the fused AdamW as it updates (`actlab.training.clipping`)."""
        logged = (self.global_step + 1) % self.trainer.log_every_n_steps == 0
        params = [p for p in self.policy.parameters() if p.grad is not None]
        if gradient_clip_val and self.device.type != "cpu":
            norm = torch.nn.utils.clip_grad_norm_(params, gradient_clip_val, foreach=True)
        elif gradient_clip_val or logged:
            norm = total_norm([p.grad for p in params])
            if gradient_clip_val and norm + CLIP_EPS > gradient_clip_val:  # clip_grad_norm_'s coefficient < 1
                clip_in_update(optimizer, params, gradient_clip_val, norm)
        if logged:
            self.log("train/grad_norm", norm)

    def configure_optimizers(self) -> dict[str, Any]:
        cfg = self.optimizer_cfg
        # One fused kernel for the whole update (PyTorch >= 2.4 on CPU and CUDA); not under 16-mixed, whose
        # gradient scaler would then leave the gradients scaled when they are clipped.
        precision = self._trainer.precision if self._trainer is not None else "32-true"
        fused = self.device.type in ("cpu", "cuda") and precision != "16-mixed"
        optimizer = torch.optim.AdamW(
            param_groups(self.policy, cfg.lr, cfg.lr_backbone),
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            **({"fused": True} if fused else {"foreach": True}),
        )
        optimizer.register_step_post_hook(forget_grad_scale)
        scheduler = LambdaLR(optimizer, lambda step: lr_factor(step, self.scheduler_cfg, self.max_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_fit_start(self) -> None:
        # The policy is on its training device now: an `auto` inference precision is chosen for it.
        self.policy.configure_inference(*self.policy.inference_settings)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Before Lightning's strict load: one line for weights that do not fit this policy."""
        expected = {f"policy.{k}": v for k, v in self.policy.state_dict().items()}
        check_weights(expected, checkpoint["state_dict"], Path(self.trainer.ckpt_path or "checkpoint") / WEIGHTS_NAME)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["policy_config"] = self.policy.config.to_dict()
        checkpoint["run_config"] = self.run_config
