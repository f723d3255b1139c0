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
from collections.abc import Mapping
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
        return _dtype(obj.get(b"dtype")).type(obj.get(b"data"))
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


def unpackb(data: bytes) -> Any:
    """A frame's content; anything that is not msgpack-numpy is a ProtocolError naming the problem."""
    try:
        return msgpack.unpackb(data, object_hook=_unpack, strict_map_key=False)
    except ProtocolError:
        raise
    except (msgpack.UnpackException, ValueError, TypeError) as e:
        detail = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        raise ProtocolError(f"not a msgpack frame ({detail})") from None


Packer = functools.partial(msgpack.Packer, default=_pack)


# ----------------------------------------------------------------------------------------- observations
def flatten(request: Mapping, prefix: str = "") -> dict[str, Any]:
    """{"states": {"qpos": a}} -> {"states.qpos": a}; keys already dotted (LeRobot's names) stay as they are."""
    out = {}
    for key, value in request.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


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
        values = [np.asarray(flat[s]) for s in sources]
        out[feature] = values[0] if len(values) == 1 else np.concatenate([np.ravel(v) for v in values])
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
        "actions_key": actions_key,
        "image_layout": "H x W x 3 uint8, or 3 x H x W float in [0, 1]",
        "actlab_version": version,
    }


def _describe(features: Mapping[str, PolicyFeature]) -> dict[str, dict]:
    return {key: {"type": f.type, "shape": list(f.shape)} for key, f in features.items()}
