"""The OmegaConf resolvers that conf/ uses: `${actlab.run_dir:...}` (where a run or a resumed run writes)
and `${actlab.direction:...}` (which way a sweeper optimises the metric); and the check, before anything
heavy is imported, that `resume=` names a run with a readable checkpoint which this run continues."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from actlab.config.checkpoint_files import check_checkpoint_files
from actlab.config.policy import ARCHITECTURE_KEYS
from actlab.errors import ActlabError

RESUME_DATASET_KEYS = ["format", "root", "weights", "repo_id", "cameras", "val_split"]  # what decides the batch stream


def run_dir(resume: str | None, fresh: str) -> str:
    """Resolver behind `hydra.run.dir`: `resume=<run dir>` continues in that directory when it holds a
    checkpoint; otherwise the run starts in a fresh one (and `train` reports the bad resume path)."""
    if resume and has_last_checkpoint(Path(resume)):
        return str(resume)
    return fresh


def has_last_checkpoint(run: Path) -> bool:
    """`checkpoints/last` is there, or can be recovered (moved aside by a save that a kill interrupted on a
    system without atomic folder exchange; `actlab.io.remove_stale` renames it back)."""
    checkpoints = run / "checkpoints"
    return (checkpoints / "last" / "training_state.pt").is_file() or any(
        checkpoints.glob(".last.old-*/training_state.pt")
    )


def optimization_direction(metric: str | None) -> str:
    """Resolver behind the sweeper's direction: success rates and rewards up, losses down."""
    return "maximize" if metric and str(metric).startswith("eval/") and "length" not in str(metric) else "minimize"


def check_resumable(resume: str | None, cfg: DictConfig | None = None) -> None:
    """`resume=<run dir>` names a run with a checkpoint to continue from, whose settings and policy files can
    be read, or one line saying what is wrong. With the resuming run's config `cfg`, also that it continues
    that run: the same model settings and the same data (a resumed run replays the batches the original
    would have seen), every difference in one line. (A `last/` that a kill left moved aside is checked once
    training has put it back.)"""
    if not resume:
        return
    last = Path(resume) / "checkpoints" / "last"
    if not has_last_checkpoint(Path(resume)):
        raise ActlabError(f"resume={resume}: no checkpoint at {last}; expected a run directory with checkpoints/last")
    if last.is_dir():
        saved = check_checkpoint_files(last)
        if cfg is not None:
            check_same_run(cfg, saved)


def check_same_run(cfg: DictConfig, saved: dict[str, Any]) -> None:
    """`cfg` (a resuming run's config) has the architecture and the data of the run whose settings are `saved`."""
    current = OmegaConf.to_container(cfg, resolve=True)
    changes = []
    for group, keys in (("model", ARCHITECTURE_KEYS), ("dataset", RESUME_DATASET_KEYS)):
        old, new = saved.get(group, {}), current[group]
        changes += [
            f"{group}.{k} is {new.get(k)} but the run being resumed had {old[k]}"
            for k in keys
            if isinstance(old, dict) and k in old and old[k] != new.get(k)
        ]
    if changes:
        raise ActlabError(
            f"resume={cfg.resume}: {'; '.join(changes)}; pass the same settings as that run (resume continues it)"
        )
