"""`python train.py ...` / `actlab-train ...`: the training entry point (errors: `actlab.entry`).

The return value (`optimized_metric`) is what Hydra sweepers optimise.

DDP processes rejoin their parent's job first (actlab.training.ddp).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from actlab.config.compose import CONFIG_DIR
from actlab.config.schema import register_configs
from actlab.entry import run_task
from actlab.training.ddp import rejoin_ddp_job

register_configs()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def hydra_main(cfg: DictConfig) -> float | None:
    from actlab.training.train import objective, train

    return run_task(cfg, lambda c: objective(c, train(c)))


def main() -> None:
    rejoin_ddp_job()
    hydra_main()
