"""`python train.py ...` / `actlab-train ...`: the training entry point (errors: `actlab.entry`).

The return value (`optimized_metric`) is what Hydra sweepers optimise.

With DDP, Lightning starts the other processes by running this script again (its Hydra support passes
the parent's command line plus `hydra.run.dir`); in a sweep that command line is the whole sweep (`-m`,
comma lists), so each process would start a sweep of its own. Instead, every process rejoins the exact
job of its parent: the parent records the job's overrides and output directory in ACTLAB_DDP_JOB, and a
process with a LOCAL_RANK above 0 runs those, in that directory, as a single run.
"""

from __future__ import annotations

import json
import os
import sys

import hydra
from omegaconf import DictConfig

from actlab.config.compose import CONFIG_DIR
from actlab.config.schema import register_configs
from actlab.entry import run_task

DDP_JOB = "ACTLAB_DDP_JOB"

register_configs()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def hydra_main(cfg: DictConfig) -> float | None:
    from actlab.training.train import objective, train

    return run_task(cfg, lambda c: objective(c, train(c)))


def rejoin_ddp_job() -> None:
    """In a process DDP started (LOCAL_RANK > 0): the command line of the parent's job, as one run."""
    job = os.environ.get(DDP_JOB)
    if not job or int(os.environ.get("LOCAL_RANK", "0")) == 0:
        return
    job = json.loads(job)
    rank = os.environ["LOCAL_RANK"]
    sys.argv = [
        sys.argv[0],
        *job["overrides"],
        f"hydra.run.dir={json.dumps(job['output_dir'])}",
        "hydra.output_subdir=null",
        f"hydra.job.name=train_ddp_process_{rank}",
    ]


def main() -> None:
    rejoin_ddp_job()
    hydra_main()
