"""`python train.py ...` / `actlab-train ...`: the training entry point (errors: `actlab.entry`).

The return value (`optimized_metric`) is what Hydra sweepers optimise.

DDP processes rejoin their parent's job first (actlab.training.ddp).
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from actlab.config.command import hydra_command
from actlab.config.compose import CONFIG_DIR, check_config, check_hardware
from actlab.config.resolvers import check_resumable
from actlab.config.resume_overrides import resume_overrides
from actlab.config.schema import register_configs
from actlab.entry import report_error, run_task
from actlab.errors import ActlabError
from actlab.training.ddp import rejoin_ddp_job

register_configs()
log = logging.getLogger("actlab")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def hydra_main(cfg: DictConfig) -> float | None:
    return run_task(cfg, checked_train)


def checked_train(cfg: DictConfig) -> float | None:
    """The config is checked and the dataset read (its demonstrations collected first, where the preset
    collects them) before the training stack (torch, Lightning) is imported: a config or data error answers
    in seconds, not after the import. The hardware is checked with torch alone, before Lightning."""
    check_config(cfg)
    check_resumable(cfg.resume, cfg)
    from actlab.data.formats import load_store
    from actlab.sim.collect import dataset_config

    data = dataset_config(cfg)
    log.info(f"Reading the dataset {data.root or getattr(data, 'repo_id', None)}")
    store = load_store(data, cfg.paths.cache_dir)
    check_hardware(cfg.trainer)  # imports torch, not yet Lightning
    from actlab.training.train import objective, train

    return objective(cfg, train(cfg, data, store))


def main() -> None:
    rejoin_ddp_job()
    try:  # `resume=<run dir>`: the run's own overrides, this command's on top (where resuming allows them)
        sys.argv[1:] = resume_overrides(sys.argv[1:])
    except ActlabError as e:
        report_error(f"error: {e}")
        sys.exit(2)
    with hydra_command():
        hydra_main()
