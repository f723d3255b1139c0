"""The wire protocol of open robot-policy serving (openpi's `websocket_policy_server` / `openpi-client`):
websocket binary frames of msgpack, with numpy arrays as maps

    {b"__ndarray__": True, b"data": <bytes>, b"dtype": "<f4", b"shape": [H, W, 3]}

and numpy scalars as {b"__npgeneric__": True, b"data": <value>, b"dtype": "<f8"}. Arrays are rebuilt from
their bytes, never unpickled; object, void and complex dtypes are refused both ways. Errors travel as
text frames (openpi's clients raise on a text frame).

A session: the server sends one metadata frame on connect; each request is a map of observation arrays
keyed by the policy's feature names (images H x W x 3 uint8 as cameras give them, or 3 x H x W float in
[0, 1]); each reply is {"actions": (chunk, A) float32, "server_timing": {"infer_ms": ...}};
{"reset": true} starts a new episode (the server forgets the observation history) and is answered
{"reset": true}. Actions that fail actlab.features.check_action (NaN, Inf, a wrong length) are never sent:
the reply is the error frame "error: unsafe actions: ...".
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import torch

from actlab.errors import ActlabError
from actlab.features import PolicyFeature

REFUSED_KINDS = ("V", "O", "c")  # void (structured), object, complex
MAX_DIMS = 8


class ProtocolError(ActlabError):
    """A request the server cannot act on: answered with an error frame; the connection stays open."""


UNSAFE_ACTIONS = "unsafe actions"  # how the error frame for actions that must not reach a robot starts


class UnsafeActions(ActlabError):
    """The policy's actions for a request failed check_action: answered with an error frame, never sent."""


def _pack(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in REFUSED_KINDS:
        raise ValueError(f"cannot send arrays of dtype {obj.dtype}")
    if isinstance(obj, np.ndarray):
        obj = np.ascontiguousarray(obj)
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


def _unpack(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        dtype, shape = _dtype(obj.get(b"dtype")), obj.get(b"shape")
        data = obj.get(b"data")
        if (
            not isinstance(shape, (list, tuple))
            or len(shape) > MAX_DIMS
            or not all(isinstance(d, int) and d >= 0 for d in shape)
        ):
            raise ProtocolError(f"an array has an invalid shape {shape!r}")
        if not isinstance(data, bytes) or len(data) != math.prod(shape) * dtype.itemsize:
            size = len(data) if isinstance(data, bytes) else type(data).__name__
            raise ProtocolError(f"an array of shape {list(shape)} and dtype {dtype} carries {size} bytes")
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    if b"__npgeneric__" in obj:
        dtype, value = _dtype(obj.get(b"dtype")), obj.get(b"data")
        try:
            return dtype.type(value)
        except OverflowError:  # np.int8(1000), np.uint8(-1): numpy raises, it never wraps
            raise ProtocolError(f"a numpy scalar of dtype {dtype} cannot hold {str(value)[:40]}") from None
    return obj


def _dtype(name: Any) -> np.dtype:
    try:
        dtype = np.dtype(name)
    except (TypeError, ValueError):
        raise ProtocolError(f"unknown dtype {name!r}") from None
    if dtype.kind in REFUSED_KINDS:
        raise ProtocolError(f"arrays of dtype {dtype} are refused (object, void and complex data never travel)")
    return dtype


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_pack)


@dataclass(frozen=True)
class Limits:
    """The most a request may hold, so that a hostile frame costs little before it is refused: `keys` entries
    in one map and `items` in one list (checked by msgpack on reading a map's or list's header, before its
    content is read), maps and lists nested `depth` deep, and `entries` in all maps and lists together
    (both checked as each map or list is read). See request_limits."""

    keys: int
    items: int
    depth: int
    entries: int


def request_limits(features: Mapping[str, PolicyFeature], key_map: Mapping[str, Any] | None = None) -> Limits:
    """Generous bounds on what a request for a policy reading `features` (under `key_map`) can need: its
    names (features and the keys they are mapped from) and a few more (a prompt, a timestamp) in one map, the
    dotted names as nested maps ({"observation": {"state": ...}}) holding msgpack-numpy arrays or vectors as
    plain lists; images travel as arrays (bytes), never as nested lists."""
    names = set(features)
    for source in (key_map or {}).values():
        names.update([source] if isinstance(source, str) else source)
    vector = max([f.shape[0] for f in features.values() if f.type != "VISUAL" and f.shape] or [0])
    levels = max(name.count(".") + 1 for name in names) if names else 1
    keys = 16 + 2 * len(names)
    items = max(64, vector)
    # a map level per dotted part, then an array map {__ndarray__, data, dtype, shape} with its shape list
    return Limits(keys=keys, items=items, depth=levels + 3, entries=len(names) * (64 + items) + 4 * keys)


def unpackb(data: bytes, limits: Limits | None = None) -> Any:
    """A frame's content; anything that is not msgpack-numpy, or more than `limits` allow, is a ProtocolError
    naming the problem."""
    options: dict[str, Any] = dict(object_hook=_unpack, strict_map_key=False)
    if limits is not None:
        options.update(_bounded(limits), max_map_len=limits.keys, max_array_len=limits.items, max_ext_len=0)
    try:
        return msgpack.unpackb(data, **options)
    except ProtocolError:
        raise
    except (msgpack.UnpackException, ValueError, TypeError, RecursionError) as e:
        detail = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        if limits is not None and re.match(r"\d+ exceeds max_(map|array)_len", str(e)):
            raise ProtocolError(
                f"the request holds a {'map' if 'map' in str(e) else 'list'} of {str(e).split()[0]} entries; "
                f"a request for this policy needs at most {limits.keys} keys in a map and {limits.items} "
                "values in a list (images travel as msgpack-numpy arrays)"
            ) from None
        raise ProtocolError(f"not a msgpack frame ({detail})") from None


def _bounded(limits: Limits) -> dict[str, Any]:
    """object_hook and list_hook that refuse, as soon as msgpack has read the map or list that crosses
    them, nesting deeper than limits.depth and more than limits.entries entries in all. Hooks run innermost
    first: a container's depth is one more than its deepest child's (kept by id: every child container has
    been through a hook before its parent is read, and is kept alive by it)."""
    depths: dict[int, int] = {}
    entries = 0

    def depth_of(children) -> int:
        deepest = 0
        for child in children:
            if isinstance(child, (dict, list, np.ndarray)):
                deepest = max(deepest, depths.get(id(child), 0))
        return deepest + 1

    def count(container, children) -> int:
        nonlocal entries
        entries += len(container)
        if entries > limits.entries:
            raise ProtocolError(
                f"the request holds more than {limits.entries} keys and values; a request for this policy "
                "needs far fewer (images travel as msgpack-numpy arrays)"
            )
        depth = depth_of(children)
        if depth > limits.depth:
            raise ProtocolError(
                f"the request nests maps or lists more than {limits.depth} deep; a request for this policy "
                f"needs at most {limits.depth}"
            )
        return depth

    def object_hook(obj: dict) -> Any:
        depth = count(obj, obj.values())
        value = _unpack(obj)
        depths[id(value)] = depth
        return value

    def list_hook(obj: list) -> Any:
        depths[id(obj)] = count(obj, obj)
        return obj

    return dict(object_hook=object_hook, list_hook=list_hook)


Packer = functools.partial(msgpack.Packer, default=_pack)


# ----------------------------------------------------------------------------------------- observations
def flatten(request: Mapping, prefix: str = "") -> dict[str, Any]:
    """{"states": {"qpos": a}} -> {"states.qpos": a}; keys already dotted (LeRobot's names) stay as they are,
    bytes keys are read as UTF-8 (a key that is not is a ProtocolError)."""
    out = {}
    stack = [(request, prefix)]  # not recursive: a deeply nested request is an error, never a RecursionError
    while stack:
        mapping, prefix = stack.pop()
        for key, value in mapping.items():
            name = f"{prefix}{key_name(key)}"
            if isinstance(value, Mapping):
                stack.append((value, f"{name}."))
            else:
                out[name] = value
    return out


def key_name(key: Any) -> str:
    """A map key as text: bytes keys (msgpack bin) must be UTF-8."""
    if isinstance(key, bytes):
        try:
            return key.decode()
        except UnicodeDecodeError:
            raise ProtocolError(f"a key is not UTF-8 text: {key[:40]!r}") from None
    return str(key)


def apply_key_map(request: Mapping, key_map: Mapping[str, Any] | None) -> dict[str, Any]:
    """The request's values under the policy's feature names. `key_map` maps a feature name to the
    request's (dotted) key, or to a list of keys whose vectors are concatenated in that order, e.g.
    {"observation.state": ["states.left_arm", "states.right_arm"], "observation.images.top": "images.top"};
    unmapped keys pass through under their own names."""
    flat = flatten(request)
    if not key_map:
        return flat
    out = dict(flat)
    for feature, source in key_map.items():
        sources = [source] if isinstance(source, str) else list(source)
        missing = [s for s in sources if s not in flat]
        if missing:
            raise ProtocolError(f"the request has no {missing} (serve.key_map maps them to '{feature}')")
        try:
            values = [np.asarray(flat[s]) for s in sources]
            out[feature] = values[0] if len(values) == 1 else np.concatenate([np.ravel(v) for v in values])
        except (ValueError, TypeError) as e:  # ragged lists, or values that are not arrays
            raise ProtocolError(f"the request's {sources} cannot make '{feature}' ({e})") from None
    return out


def metadata(policy, version: str, actions_key: str = "actions") -> dict[str, Any]:
    """The frame a server sends on connect: what to send, what comes back, and at what rate."""
    c = policy.config
    return {
        "input_features": _describe(c.input_features),
        "output_features": _describe(c.output_features),
        "fps": c.fps,
        "chunk_size": c.chunk_size,
        "n_action_steps": c.n_action_steps,
        "n_obs_steps": c.n_obs_steps,
        "temporal_ensemble_coeff": c.temporal_ensemble_coeff,
        "action_names": c.action_names or [f"action[{i}]" for i in range(c.action_feature.shape[0])],
        "action_range": c.action_range,
        "state_names": c.state_names,
        "actions_key": actions_key,
        "image_layout": "H x W x 3 uint8, or 3 x H x W float in [0, 1]",
        "actlab_version": version,
    }


def _describe(features: Mapping[str, PolicyFeature]) -> dict[str, dict]:
    return {key: {"type": f.type, "shape": list(f.shape)} for key, f in features.items()}
