"""Chunk execution for a fixed-rate loop: which action to send at each tick, from the chunks a policy
predicts.

- `threshold=0`: exactly `select_action` (the policy's own ActionSelector: a chunk is predicted, and
  waited for, when the queue of `n_action_steps` actions is empty; or every tick with temporal ensembling).
- `threshold>0`: the next chunk is requested in the background as soon as fewer than
  `threshold * n_action_steps` planned actions remain, so inference overlaps execution. A chunk predicted
  from the observation of tick t0 plans ticks t0 .. t0 + n_action_steps - 1; the ticks that passed while
  it was computed are dropped, and where it overlaps actions already planned the two are merged:
  `latest` (the new chunk wins), `average` (the mean of every chunk that planned the tick), or `ensemble`
  (ACT's temporal-ensemble weights exp(-coeff * i), i = 0 for the oldest chunk).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

MERGES = ("latest", "average", "ensemble")


class ChunkPlan:
    """The actions planned for future ticks (threshold > 0)."""

    def __init__(self, n_action_steps: int, threshold: float, merge: str = "latest", coeff: float = 0.01):
        if merge not in MERGES:
            raise ValueError(f"merge={merge!r} is not one of {list(MERGES)}")
        self.n_action_steps = n_action_steps
        self.refill_below = math.ceil(threshold * n_action_steps)
        self.merge = merge
        self.coeff = coeff
        self.reset()

    def reset(self) -> None:
        self.planned: dict[int, list[np.ndarray]] = defaultdict(list)  # tick -> predictions, oldest first

    def remaining(self, tick: int) -> int:
        """Planned ticks from `tick` on."""
        return sum(1 for t in self.planned if t >= tick)

    def wants_chunk(self, tick: int) -> bool:
        return self.remaining(tick) < max(1, self.refill_below)

    def add(self, chunk: np.ndarray, observed_at: int, now: int) -> int:
        """Adds a chunk predicted from tick `observed_at`'s observation; returns how many of its actions
        were already too late (their ticks passed while it was computed)."""
        late = 0
        for i, action in enumerate(chunk[: self.n_action_steps]):
            tick = observed_at + i
            if tick < now:
                late += 1
                continue
            if self.merge == "latest":
                self.planned[tick] = [action]
            else:
                self.planned[tick].append(action)
        return late

    def pop(self, tick: int) -> np.ndarray | None:
        """The action for `tick` (None when nothing is planned: an underrun); forgets older ticks."""
        for t in [t for t in self.planned if t < tick]:
            del self.planned[t]
        predictions = self.planned.pop(tick, None)
        if not predictions:
            return None
        if self.merge == "ensemble":
            weights = np.exp(-self.coeff * np.arange(len(predictions)))
            return np.average(np.stack(predictions), axis=0, weights=weights).astype(np.float32)
        return np.mean(np.stack(predictions), axis=0).astype(np.float32)
