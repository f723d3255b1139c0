"""Valid ranges of the schemas' numeric keys: declared beside each field as dataclass field metadata
(`field(default=8, metadata=at_least(1))`), checked by one walker, `check_ranges`, over a composed config
(its typed nodes, found with OmegaConf.get_type) or a dataclass instance (a policy's config.json).

A bound may name a sibling key (`between(1, "chunk_size")`). Sizes and counts that decide how much memory
a network takes (`SIZE`) are also capped at MAX_SIZE, so that a config.json saying `dim_feedforward: 1e9`
is refused before anything is allocated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from actlab.errors import ActlabError

MAX_SIZE = 1 << 17  # 131072: far above any ACT (LeRobot's largest dim_feedforward is 3200), far below 1e9

Bound = float | int | str | None  # a number, the name of a sibling key, or None (unbounded)


@dataclass(frozen=True)
class Range:
    low: Bound = None
    high: Bound = None
    high_open: bool = False  # [low, high) instead of [low, high]
    integer: bool = False
    low_open: bool = False  # (low, ...: strictly above low

    def check(self, key: str, value: Any, node: Any, prefix: str) -> None:
        if value is None:  # a null default means "off" / "not set" (its type says whether it may be null)
            return
        kind = "an integer" if self.integer else "a number"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ActlabError(f"{prefix}{key}={value!r}: expected {kind}{self.describe(node, prefix)}")
        low, high = self.bound(self.low, node), self.bound(self.high, node)
        inside = math.isfinite(value) and (low is None or (value > low if self.low_open else value >= low))
        if high is not None:
            inside = inside and (value < high if self.high_open else value <= high)
        if isinstance(self.high, str) and high is not None and math.isfinite(value) and value > high:
            raise ActlabError(
                f"{prefix}{key}={value!r} exceeds {prefix}{self.high}={high!r}; expected {key} <= {self.high}"
            )
        if isinstance(self.low, str) and low is not None and math.isfinite(value) and value < low:
            raise ActlabError(
                f"{prefix}{key}={value!r} is below {prefix}{self.low}={low!r}; expected {key} >= {self.low}"
            )
        if not inside or (self.integer and isinstance(value, float)):
            raise ActlabError(f"{prefix}{key}={value!r}: expected {kind}{self.describe(node, prefix)}")

    @staticmethod
    def bound(bound: Bound, node: Any) -> float | None:
        if isinstance(bound, str):
            value = getattr(node, bound, None) if not isinstance(node, DictConfig) else node.get(bound)
            return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        return bound

    def describe(self, node: Any = None, prefix: str = "") -> str:
        """` >= 1`, ` in [0, 1)`, ...: with `node`, a bound that names a sibling key shows its value too."""

        def show(bound: Bound) -> str:
            if isinstance(bound, str):
                return f"{prefix}{bound}" + (f" ({self.bound(bound, node)})" if node is not None else "")
            return str(bound)

        if self.low is not None and self.high is not None:
            opening, closing = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f" in {opening}{show(self.low)}, {show(self.high)}{closing}"
        if self.low is not None:
            return f" {'>' if self.low_open else '>='} {show(self.low)}"
        if self.high is not None:
            return f" {'<' if self.high_open else '<='} {show(self.high)}"
        return ""


def at_least(low: Bound, integer: bool = False) -> dict[str, Range]:
    """Field metadata: the key's value is >= `low`."""
    return {"range": Range(low=low, integer=integer)}


def between(low: Bound, high: Bound, high_open: bool = False, integer: bool = False) -> dict[str, Range]:
    """Field metadata: the key's value is in [low, high] (or [low, high) with `high_open`)."""
    return {"range": Range(low, high, high_open, integer)}


COUNT = {"range": Range(low=1, integer=True)}  # a number of things (steps, episodes, workers): 1 or more
NON_NEGATIVE = {"range": Range(low=0)}
NON_NEGATIVE_INT = {"range": Range(low=0, integer=True)}
POSITIVE = {"range": Range(low=0, low_open=True)}  # a rate, a time, a learning rate: > 0
SIZE = {"range": Range(low=1, high=MAX_SIZE, integer=True)}  # a size or count that shapes a network
FRACTION = {"range": Range(low=0, high=1, high_open=True)}  # a probability or share: [0, 1)
UNIT = {"range": Range(low=0, high=1)}  # [0, 1]
SEED = {"range": Range(low=0, high=2**32 - 1, integer=True)}  # numpy's and Lightning's seed range


def field_range(f: Any) -> Range | None:
    return f.metadata.get("range")


def check_ranges(node: Any, prefix: str = "") -> None:
    """Fails with one line, `key=value: expected ...`, at the first value outside its declared range in
    `node` (a composed config or any node of it, or a dataclass instance) and the typed nodes below it."""
    schema = type(node) if is_dataclass(node) else OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
    if schema is not None and is_dataclass(schema):
        for f in fields(schema):
            rule = field_range(f)
            if rule is not None and not (isinstance(node, DictConfig) and OmegaConf.is_missing(node, f.name)):
                rule.check(f.name, get(node, f.name), node, prefix)
    for key, child in children(node):
        check_ranges(child, f"{prefix}{key}.")


def get(node: Any, key: str) -> Any:
    return node.get(key) if isinstance(node, DictConfig) else getattr(node, key, None)


def children(node: Any) -> list[tuple[str, Any]]:
    """The sub-configs of `node` (typed or not: an untyped node may hold typed ones)."""
    if isinstance(node, DictConfig):
        return [(str(k), node[k]) for k in node.keys() if isinstance(node._get_node(k), DictConfig)]
    if is_dataclass(node):
        return [(f.name, getattr(node, f.name)) for f in fields(node) if is_dataclass(getattr(node, f.name, None))]
    return []
