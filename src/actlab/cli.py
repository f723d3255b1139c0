"""`python train.py ...` / `actlab-train ...`: the Hydra entry point.

User errors (bad paths, keys or values) print one line on stderr and exit with status 2, before any
checkpoint is written. The return value (`optimized_metric`) is what Hydra sweepers optimise.
"""

from __future__ import annotations

import logging
import sys
import warnings

import hydra
from omegaconf import DictConfig

from actlab.config.compose import CONFIG_DIR
from actlab.config.schema import register_configs
from actlab.errors import ActlabError

log = logging.getLogger("actlab")

register_configs()


def quiet_library_logging() -> None:
    """Lightning installs its own console handler at import; let its records reach Hydra's handlers
    (console and train.log) once instead, and drop warnings that say nothing about the user's run."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*video decoding and encoding capabilities of torchvision.*")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    from actlab.training.train import train

    quiet_library_logging()
    try:
        metrics = train(cfg)
    except ActlabError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if cfg.optimized_metric:
        if cfg.optimized_metric not in metrics:
            raise ActlabError(f"optimized_metric={cfg.optimized_metric} was not logged; have {sorted(metrics)}")
        return metrics[cfg.optimized_metric]
    return None
