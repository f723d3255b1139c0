"""`python train.py resume=<run dir>` continues that run with its own settings, as `lerobot-train --resume=true`
does: before Hydra composes, the command line becomes the run's own overrides (its `.hydra/overrides.yaml`)
with this command's on top, so Hydra composes the config the run had, and writes the same list back.

Only the keys in RESUMABLE_KEYS may change on resume (how long, how often to log, evaluate and save); any
other override that changes the composed config is refused, every difference in one line."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from actlab.errors import ActlabError

RESUMABLE_KEYS = (
    "trainer.max_steps",
    "trainer.log_every_n_steps",
    "trainer.val_check_interval",
    "trainer.enable_progress_bar",
    "checkpoint.save_freq",
    "env.eval_freq",
    "env.eval_episodes",
    "env.final_eval_episodes",
    "env.video_episodes",
)
VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn"}
VALUE_FLAGS |= {"--config-dir", "-cd", "--experimental-rerun"}
SWEEP_FLAGS = {"-m", "--multirun"}


def resume_overrides(argv: list[str], config_name: str = "train") -> list[str]:
    """`argv` (a train command line) with the resumed run's own overrides merged in: each of this command's
    overrides replaces the run's override of the same key, or is appended. Unchanged when there is no
    `resume=`, in a sweep, or when the run directory has no `.hydra/overrides.yaml`."""
    flags, overrides = split_argv(argv)
    keys = [override_key(o) for o in overrides]
    if "resume" not in keys or SWEEP_FLAGS & set(flags):
        return argv
    resume = overrides[keys.index("resume")].split("=", 1)[1].strip("'\"")
    saved = saved_overrides(Path(resume)) if resume not in ("", "null") else None
    if saved is None:
        return argv
    given = {k: o for k, o in zip(keys, overrides, strict=True) if k != "resume"}
    saved = [o for o in saved if override_key(o) != "resume"]
    saved_keys = [override_key(o) for o in saved]
    merged = [given.get(k, o) for k, o in zip(saved_keys, saved, strict=True)]
    merged += [o for k, o in given.items() if k not in saved_keys]
    merged.append(f"resume={resume}")
    changing = [o for k, o in given.items() if k not in RESUMABLE_KEYS and not k.startswith("hydra") and o not in saved]
    if changing:
        check_unchanged(resume, saved, merged[:-1], config_name)
    return flags + merged


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """(Hydra's flags with their values, the overrides) of a command line."""
    flags, overrides, value_next = [], [], False
    for arg in argv:
        if value_next or arg.startswith("-"):
            flags.append(arg)
            value_next = not value_next and arg in VALUE_FLAGS
        else:
            overrides.append(arg)
    return flags, overrides


def override_key(override: str) -> str:
    """The key or group an override sets, without its `+`, `++` or `~` (`model`, `trainer.max_steps`)."""
    key = override.split("=", 1)[0].lstrip("+~")
    return key.split("@", 1)[0]


def saved_overrides(run_dir: Path) -> list[str] | None:
    """The overrides the run was started with, or None when it has none saved (not a Hydra run directory)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    try:
        saved = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same one-line error
        raise ActlabError(f"resume={run_dir}: {path} cannot be read ({type(e).__name__})") from None
    if not isinstance(saved, list) or not all(isinstance(o, str) for o in saved):
        raise ActlabError(f"resume={run_dir}: {path} is not a list of overrides; it is damaged")
    return saved


def check_unchanged(resume: str, saved: list[str], merged: list[str], config_name: str) -> None:
    """Composes the run's config and the one asked for; every difference outside RESUMABLE_KEYS (a group
    option, then each key not under a changed group) goes in one error. A config that does not compose is
    left for Hydra to report."""
    try:
        before, after = compose_choices(saved, config_name), compose_choices(merged, config_name)
    except Exception:  # noqa: BLE001 - Hydra reports its own composition errors when it composes
        return
    groups = [g for g in after[0] if before[0].get(g) != after[0][g] and not g.startswith("hydra")]
    changes = [f"{g}={after[0][g]} (the run has {g}={before[0].get(g)})" for g in groups]
    for key in sorted(before[1].keys() | after[1].keys()):
        old, value = before[1].get(key, "absent"), after[1].get(key, "absent")
        if old != value and key not in RESUMABLE_KEYS and not any(key.startswith(f"{g}.") for g in groups):
            changes.append(f"{key}={value} (the run has {old})")
    if changes:
        raise ActlabError(
            f"resume={resume} continues the run with its own settings; resuming cannot change "
            f"{', '.join(changes)}; drop these overrides (`resume={resume}` alone continues it) or start a new "
            f"run. On resume only {', '.join(RESUMABLE_KEYS)} may change"
        )


def compose_choices(overrides: list[str], config_name: str) -> tuple[dict, dict]:
    """(the group options chosen, every leaf key -> value, unresolved) of a composed config."""
    from hydra import compose, initialize_config_dir

    from actlab.config.compose import CONFIG_DIR
    from actlab.config.schema import register_configs

    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    choices = dict(OmegaConf.to_container(cfg.hydra.runtime.choices))
    container = OmegaConf.to_container(cfg, resolve=False)
    container.pop("hydra")
    container.pop("resume", None)
    return choices, dict(leaves(container))


def leaves(node: object, prefix: str = ""):
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from leaves(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, node
