"""The Lightning Trainer of a run: its arguments are the `trainer` group's (every field of TrainerConfig but
the actlab-only ones), with `precision=auto` resolved for the device, and the settings actlab fixes (steps,
not epochs; its own checkpointing and progress bar)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from actlab.config.schema import TrainerConfig
from actlab.devices import bf16_is_native, check_bf16
from actlab.errors import ActlabError
from actlab.training.checkpoint_io import FolderCheckpointIO

FIXED = dict(  # what actlab decides: training counts steps; checkpoints and the model summary are its own
    max_epochs=-1,
    check_val_every_n_epoch=None,
    num_sanity_val_steps=0,
    enable_checkpointing=False,
    enable_model_summary=False,
)


def trainer_kwargs(cfg: DictConfig, has_validation: bool = True) -> dict[str, Any]:
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    kwargs = {f.name: trainer[f.name] for f in fields(TrainerConfig) if not f.metadata.get("actlab_only")}
    kwargs["precision"] = training_precision(kwargs["precision"], kwargs["accelerator"])
    if not has_validation:
        kwargs["limit_val_batches"] = 0
    return {**kwargs, **FIXED}


def build_trainer(cfg: DictConfig, callbacks: list, loggers: list, has_validation: bool) -> L.Trainer:
    try:
        return L.Trainer(
            **trainer_kwargs(cfg, has_validation),
            callbacks=callbacks,
            logger=loggers or False,
            plugins=[FolderCheckpointIO()],
            default_root_dir=Path(cfg.paths.output_dir),
        )
    except (MisconfigurationException, ValueError) as e:  # e.g. an unknown trainer.precision
        raise ActlabError(f"trainer: {e}") from None


def training_precision(precision: str, accelerator: str) -> str:
    """`trainer.precision=auto`: bf16-mixed on a GPU with bf16 or a CPU with native bf16 instructions,
    16-mixed on an older GPU, 32-true otherwise. An explicit bf16 on a CPU that emulates it warns once."""
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    device = "cuda" if on_gpu else "cpu"
    if precision == "auto":
        return "bf16-mixed" if bf16_is_native(device) else ("16-mixed" if on_gpu else "32-true")
    if str(precision).startswith("bf16"):
        check_bf16(f"trainer.precision={precision}", device)
    return precision
