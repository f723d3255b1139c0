"""What stands between a policy's output and the robot in the control loop: the clipping range (the
training data's action range, widened by `control.clip_margin`) and the last check of every action
(actlab.features.check_action, the same one the server and the simulator rollouts use)."""

from __future__ import annotations

import numpy as np

from actlab.errors import ActlabError
from actlab.features import check_action

Bounds = tuple[np.ndarray, np.ndarray]


def action_dim(info: dict) -> int | None:
    """The length of the policy's actions, from its metadata (output_features, else action_range)."""
    shape = (info.get("output_features") or {}).get("action", {}).get("shape")
    if shape:
        return int(shape[0])
    action_range = info.get("action_range")
    return len(action_range["min"]) if action_range else None


def clip_bounds(action_range: dict | None, margin: float) -> Bounds | None:
    """The data's action range widened by `margin` of its width on each side; None without a range."""
    if not action_range:
        return None
    low, high = np.asarray(action_range["min"], np.float32), np.asarray(action_range["max"], np.float32)
    width = high - low
    return low - margin * width, high + margin * width


def check_bounds(bounds: Bounds | None, dim: int | None, margin: float) -> None:
    """Fails with one line when the clipping range does not fit the actions or could pass none at all."""
    if bounds is None:
        return
    low, high = bounds
    if low.ndim != 1 or low.shape != high.shape or (dim is not None and low.shape != (dim,)):
        raise ActlabError(f"the policy's action_range has {low.size} values for {dim}-D actions")
    if not (np.isfinite(low).all() and np.isfinite(high).all() and (low <= high).all()):
        raise ActlabError(
            f"the clipping range is empty or not finite (the policy's action_range widened by "
            f"control.clip_margin={margin}): no action could be sent; check the checkpoint's statistics"
        )


def safe_action(action: np.ndarray, dim: int | None, bounds: Bounds | None) -> tuple[np.ndarray, str | None]:
    """The action clipped to `bounds` (when it has their length), and why it must not be sent (None: it
    may)."""
    if bounds is not None and np.shape(action) == bounds[0].shape:
        action = np.clip(action, *bounds)
    return action, check_action(action, dim, bounds)
