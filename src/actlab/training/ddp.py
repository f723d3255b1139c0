"""One training job's DDP processes, also inside a sweep.

With DDP, Lightning starts the other processes by running the entry script again (its Hydra support passes
the parent's command line plus `hydra.run.dir`); in a sweep that command line is the whole sweep (`-m`,
comma lists), so each process would start a sweep of its own. Instead, every process rejoins the exact
job of its parent: the parent records the job's overrides and output directory in ACTLAB_DDP_JOB, and a
process with a LOCAL_RANK above 0 runs those, in that directory, as a single run.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from omegaconf import DictConfig

DDP_JOB = "ACTLAB_DDP_JOB"


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


# What Lightning's DDP launcher sets in the process that starts the others.
DDP_VARIABLES = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", DDP_JOB)


@contextmanager
def distributed_job(cfg: DictConfig) -> Iterator[None]:
    """One job's DDP processes. On the way in, records the job for the processes DDP starts (actlab.cli
    rejoins it: its overrides and output directory, be it a run or a job of a sweep); on the way out, clears
    what Lightning leaves behind in this process (the process group, the variables its launcher set), so
    the next job of a sweep starts processes of its own instead of taking itself for one of them."""
    import torch
    from hydra.core.hydra_config import HydraConfig

    saved = {name: os.environ.get(name) for name in DDP_VARIABLES}
    if HydraConfig.initialized():
        job = {"overrides": list(HydraConfig.get().overrides.task), "output_dir": str(cfg.paths.output_dir)}
        os.environ[DDP_JOB] = json.dumps(job)
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
