"""One typed schema per config-group option (the pattern of Hydra's "Structured Config schema" tutorial).

A group (`encoder`, `dataset`, `env`) has a base dataclass with the keys all its options share and one
subclass per option with that option's own keys, registered by `@option_schema(group, name)` and stored in
Hydra's ConfigStore as `<group>/<name>_schema`. `conf/<group>/<option>.yaml` lists that schema first in its
defaults, so a key of another option fails at compose time with Hydra's own message (e.g. `Key 'norm' not in
'ClipEncoderConfig'`). Ranges and choices are each schema's `check()`, called by `check_config`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any, TypeVar

from omegaconf import OmegaConf

from actlab.errors import ActlabError

T = TypeVar("T", bound=type)

SCHEMAS: dict[str, dict[str, type]] = {}  # group -> option schema name (without `_schema`) -> dataclass


def option_schema(group: str, name: str) -> Callable[[T], T]:
    """Class decorator: the dataclass is the schema `<name>_schema` of config group `group`."""

    def register(cls: T) -> T:
        SCHEMAS.setdefault(group, {})[name] = cls
        return cls

    return register


def store_option_schemas() -> None:
    from hydra.core.config_store import ConfigStore

    for group, schemas in SCHEMAS.items():
        for name, cls in schemas.items():
            ConfigStore.instance().store(group=group, name=f"{name}_schema", node=cls)


def plain(data: Any) -> dict[str, Any]:
    """A config node or mapping as a plain dict (interpolations resolved)."""
    if OmegaConf.is_config(data):
        return OmegaConf.to_container(data, resolve=True)  # type: ignore[return-value]
    if not isinstance(data, Mapping):
        raise ActlabError(f"expected a mapping of settings, got {type(data).__name__}")
    return dict(data)


def typed(schema: type, data: Mapping[str, Any], what: str, legacy: Mapping[str, Any] | None = None) -> Any:
    """`data` as an instance of `schema` (nested settings as their dataclasses, values checked against the
    field types), with the keys `schema` lacks left out. With `legacy` (the keys an older actlab wrote
    for every option of the group, and their defaults then), such a key is left out only when it holds null
    or that default; any other value, or a key that never existed, is refused with one line (`what` names
    the option, e.g. `encoder=clip`). Without `legacy`, every key the schema lacks is left out."""
    known = {f.name for f in fields(schema)}
    group = what.partition("=")[0]
    kept = {}
    for key, value in data.items():
        if key in known:
            kept[key] = value
        elif legacy is not None and not (key in legacy and (value is None or value == legacy[key])):
            raise ActlabError(
                f"{group}.{key}={value!r} is not a setting of {what} ({schema.__name__} has {sorted(known)})"
            )
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), kept))


def check_node(node: Any) -> None:
    """Runs the `check()` of a composed group node's schema (the node as its dataclass)."""
    OmegaConf.to_object(node).check()


# Field metadata saying what a key is to a trained policy; one place for "which keys shape the weights".
SHAPES_WEIGHTS = {"role": "weights"}  # the weights fit only the value they were trained with
AT_INFERENCE = {"role": "inference"}  # may change when a trained policy acts (actlab-eval, -serve, -deploy)


def keys_with(schema: type, role: Mapping[str, str]) -> tuple[str, ...]:
    """The fields of `schema` (a dataclass or an instance) whose metadata is `role`."""
    return tuple(f.name for f in fields(schema) if f.metadata.get("role") == role["role"])
