"""The vocabulary every layer speaks: LeRobot's feature keys, what a feature looks like, and the one way an
observation (from a simulator, a dataset frame, a robot or a request) becomes the policy's batch.

    observation.state                  (D,) float: the robot's own state
    observation.environment_state      (E,) float: the scene's state (object poses)
    observation.images.<camera>        H x W x 3 uint8 as cameras give them, or 3 x H x W float in [0, 1]
    action                             (A,) float
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from actlab.errors import ActlabError

if TYPE_CHECKING:  # imported where tensors are made: the config layer reads this module without torch
    import torch

OBS_STATE = "observation.state"
OBS_ENV_STATE = "observation.environment_state"
OBS_IMAGES = "observation.images"
ACTION = "action"
ACTION_IS_PAD = "action_is_pad"
OBSERVATION_IS_PAD = "observation_is_pad"

FEATURE_TYPES = ("STATE", "ENV", "VISUAL", "ACTION")


@dataclass(frozen=True)
class PolicyFeature:
    type: str  # one of FEATURE_TYPES
    shape: tuple[int, ...]  # (dim,) for vectors, (channels, height, width) for images


def as_feature(value: PolicyFeature | Mapping[str, Any]) -> PolicyFeature:
    """A PolicyFeature from itself or from its JSON form {"type": ..., "shape": [...]}."""
    if isinstance(value, PolicyFeature):
        return PolicyFeature(value.type, tuple(value.shape))
    if value["type"] not in FEATURE_TYPES:
        raise ActlabError(f"feature type {value['type']!r} is not one of {FEATURE_TYPES}")
    return PolicyFeature(value["type"], tuple(int(s) for s in value["shape"]))


class ObservationError(ActlabError):
    """An observation the policy cannot read (a missing key, a wrong shape or dtype, NaN)."""


def check_provides(needed: Mapping[str, PolicyFeature], given: Mapping[str, PolicyFeature], source: str, hint: str):
    """Fails with one line when `source` (a dataset, a simulator, a robot) does not give every feature
    `needed` (a policy's inputs and outputs) with the same shape; `hint` says what to check."""
    for key, feature in needed.items():
        have = given.get(key)
        if have is None or tuple(have.shape) != tuple(feature.shape):
            got = "nothing" if have is None else f"shape {list(have.shape)}"
            needs = f"the policy needs '{key}' with shape {list(feature.shape)}"
            raise ActlabError(f"{needs} but {source} gives {got}; {hint}")


def to_policy_batch(
    observation: Mapping[str, Any], features: Mapping[str, PolicyFeature], device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """The policy's inputs (`features`) as a batch of one on `device`: vectors (D,) float become (1, D)
    float32, images H x W x 3 uint8 become (1, 3, H, W) uint8 and 3 x H x W float in [0, 1] stay float. A
    missing key, a wrong shape or dtype, a ragged list, a NaN, or a float image outside [0, 1] is an
    ObservationError naming it."""
    import torch

    batch = {}
    for key, feature in features.items():
        if key not in observation:
            raise ObservationError(f"the observation has no '{key}'; the policy reads {list(features)}")
        value = observation[key]
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        elif not isinstance(value, np.ndarray):
            try:
                value = np.asarray(value)
            except (ValueError, TypeError) as e:  # ragged lists
                raise ObservationError(f"'{key}' is not an array of numbers ({e})") from None
        if value.dtype.kind not in "biuf":
            raise ObservationError(f"'{key}' has dtype {value.dtype}; expected numbers")
        if feature.type == "VISUAL":
            tensor = _image(key, value, feature)
        else:
            if value.shape != tuple(feature.shape):
                raise ObservationError(f"'{key}' has shape {list(value.shape)}; expected {list(feature.shape)}")
            tensor = _finite(key, torch.from_numpy(np.array(value, dtype=np.float32)))
        batch[key] = tensor.unsqueeze(0).to(device)
    return batch


def _image(key: str, value: np.ndarray, feature: PolicyFeature) -> torch.Tensor:
    import torch

    channels, height, width = feature.shape
    if value.shape == (height, width, channels):
        if value.dtype != np.uint8:
            raise ObservationError(f"'{key}' is H x W x C {value.dtype}; H x W x C images must be uint8")
        return torch.from_numpy(np.array(value)).permute(2, 0, 1)
    if value.shape == (channels, height, width):
        if value.dtype.kind != "f":
            raise ObservationError(f"'{key}' is C x H x W {value.dtype}; C x H x W images must be float in [0, 1]")
        tensor = _finite(key, torch.from_numpy(np.array(value, dtype=np.float32)))
        low, high = tensor.min().item(), tensor.max().item()
        if low < 0 or high > 1:
            raise ObservationError(
                f"'{key}' holds values in [{low:.4g}, {high:.4g}]; C x H x W float images must be in [0, 1]"
            )
        return tensor
    raise ObservationError(
        f"'{key}' has shape {list(value.shape)}; expected {[height, width, channels]} (uint8) or "
        f"{[channels, height, width]} (float in [0, 1])"
    )


def _finite(key: str, tensor: torch.Tensor) -> torch.Tensor:
    import torch

    if not torch.isfinite(tensor).all():
        raise ObservationError(f"'{key}' holds NaN or Inf")
    return tensor


def check_action(action: Any, dim: int | None, bounds: tuple[np.ndarray, np.ndarray] | None = None) -> str | None:
    """Why `action`, an (A,) action or a (T, A) chunk of them, must not reach a robot or a simulator, or
    None when it may: not numbers, not `dim` values per action, NaN or Inf, or a value outside `bounds`
    (low, high: the clipping range, so an action already clipped fails only where the range itself is
    broken). The one check before a control loop sends an action, a server replies, or a rollout steps."""
    a = np.asarray(action)
    if a.dtype.kind not in "biuf":
        return f"has dtype {a.dtype}; expected numbers"
    if a.ndim not in (1, 2) or a.shape[-1] == 0 or (dim is not None and a.shape[-1] != dim):
        return f"has shape {list(a.shape)}; expected {dim or 'A'} values per action"
    if not np.isfinite(a).all():
        return "holds NaN or Inf"
    if bounds is not None:
        low, high = (np.asarray(b, np.float64) for b in bounds)
        if low.shape != a.shape[-1:] or high.shape != a.shape[-1:]:
            return f"has {a.shape[-1]} values but the clipping range has {low.size}"
        inside = ((a >= low) & (a <= high)).reshape(-1, a.shape[-1]).all(axis=0)
        if not inside.all():
            i = int(np.argmin(inside))
            return f"is outside the clipping range at [{i}] ([{low[i]:.4g}, {high[i]:.4g}])"
    return None
