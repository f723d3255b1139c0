"""No key is silently ignored, and a config error is one line.

Hydra applies `+key=value` and `++key=value` with OmegaConf's `force_add`, which adds the key even to a typed
(struct) node: `+trainer.max_step=3` used to be accepted and never read. `check_known_keys` walks the composed
config and refuses every key that its node's schema (a dataclass) lacks, with the closest valid name; the
nodes a schema leaves open (`callbacks`, `logger`, `robot`, `serve.key_map`, ... typed `dict` or `Any`)
and `hydra.*` take any key. It runs at compose time as a Hydra callback (`RefuseUnknownKeys`, listed under
`hydra.callbacks` of the commands' configs: before the run directory exists), and again in `check_config` /
`check_command_config` (what `compose_train` / `compose_eval` and each job of a sweep apply).

`config_error` is the one line for Hydra's own composition errors (a misspelt key without `+`, a value of the
wrong type, an unknown option, an override that does not parse), which actlab.config.command reports.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import fields, is_dataclass
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf

from actlab.config.options import SCHEMAS
from actlab.entry import report_error
from actlab.errors import ActlabError


class UnknownKeyError(ActlabError):
    """A key that no schema reads."""


def unknown_keys(cfg: DictConfig) -> list[tuple[str, type]]:
    """(dotted key, schema of its node) of every key of `cfg` that its node's schema lacks (`hydra` aside)."""
    found: list[tuple[str, type]] = []

    def walk(node: Any, path: str) -> None:
        if node is None or node._is_none() or node._is_missing() or node._is_interpolation():
            return
        if isinstance(node, ListConfig):
            for index in range(len(node)):
                walk(node._get_node(index), f"{path}[{index}]")
            return
        if not isinstance(node, DictConfig):
            return
        schema = OmegaConf.get_type(node)
        known = {f.name for f in fields(schema)} if schema is not None and is_dataclass(schema) else None
        for key in node.keys():
            full = f"{path}.{key}" if path else str(key)
            if full == "hydra":
                continue
            if known is not None and key not in known:
                found.append((full, schema))
            else:
                walk(node._get_node(key), full)

    walk(cfg, "")
    return found


def closest(name: str, candidates: list[str]) -> tuple[str, float]:
    """The candidate most like `name` (difflib's ratio) and that ratio."""
    scored = [(difflib.SequenceMatcher(None, name, c).ratio(), c) for c in sorted(candidates)]
    ratio, best = max(scored, key=lambda s: s[0])
    return best, ratio


def unknown_key_message(full_key: str, schema: type) -> str:
    """`<key>: no such key; did you mean <closest>?`, naming the option whose key it is when another option
    of the same group has it, and listing the node's keys when none is close."""
    parent, _, name = full_key.rpartition(".")
    names = [f.name for f in fields(schema)]
    best, ratio = closest(name, names)
    message = f"{full_key}: no such key; did you mean {parent + '.' if parent else ''}{best}?"
    group = full_key.split(".")[0]
    owners = [
        option
        for option, other in SCHEMAS.get(group, {}).items()
        if other is not schema and name in {f.name for f in fields(other)}
    ]
    if owners and schema in SCHEMAS.get(group, {}).values():
        message += f" ({name} is a key of {' and '.join(f'{group}={o}' for o in owners)})"
    elif ratio < 0.6:
        message += f" (the keys of {parent or 'the config'}: {', '.join(names)})"
    return message


def check_known_keys(cfg: DictConfig) -> None:
    """Raises UnknownKeyError naming every key of the composed `cfg` that no schema reads."""
    unknown = unknown_keys(cfg)
    if unknown:
        raise UnknownKeyError("; ".join(unknown_key_message(key, schema) for key, schema in unknown))


class RefuseUnknownKeys(Callback):
    """Hydra callback: `check_known_keys` on the composed config of a run or a sweep, before any directory is
    made. Hydra turns a callback's exception into a warning, so the error is reported here (one line, exit
    status 2). In a sweep, the keys that only a swept value brings are refused by each job's own check
    (`check_config`, `check_command_config`)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        refuse_unknown_keys(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        refuse_unknown_keys(config)


def refuse_unknown_keys(cfg: DictConfig) -> None:
    try:
        check_known_keys(cfg)
    except UnknownKeyError as e:
        report_error(f"error: {e}")
        sys.exit(2)


def config_error(error: BaseException) -> str | None:
    """One line for an error of composing the config, or None for any other error."""
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

    if isinstance(error, MissingConfigException) and error.options and error.missing_cfg_file:
        group, _, name = str(error.missing_cfg_file).rpartition("/")
        best, _ = closest(name, list(error.options))
        return f"{group}={name}: no such option; did you mean {group}={best}? (options: {', '.join(error.options)})"
    cause = error if isinstance(error, OmegaConfBaseException) else error.__cause__
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        schema = getattr(cause, "object_type", None)
        if isinstance(cause, ConfigKeyError | ConfigAttributeError) and schema is not None and is_dataclass(schema):
            return unknown_key_message(str(cause.full_key), schema)
        return f"{cause.full_key}: {first_line(cause)}"
    if isinstance(error, HydraException | OverrideParseException | OmegaConfBaseException):
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        return " ".join(line for line in lines if not line.startswith("See https://")) or type(error).__name__
    return None


def first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__
