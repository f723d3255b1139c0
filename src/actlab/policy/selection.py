"""Choosing the action to execute now from predicted chunks, in three small pieces that every caller shares
(`select_action`, simulator rollouts, dataset replay, the server, the control loop; local and remote
policies alike):

    ObservationHistory   the network's input: with n_obs_steps > 1, the stream's recent observations
    ActionPlan           actions planned for future ticks by chunks predicted at given ticks; overlapping
                         chunks merged (latest | average | ensemble: ACT's temporal ensemble, the only one)
    ActionQueue          select_action's rule on top of a plan: a new chunk when the last one's first
                         n_action_steps actions are spent, or every tick with temporal ensembling

`ActionSelector` is one stream's pair of history and queue (one episode of one robot or simulator), kept
apart from the network so that a batch of streams shares one forward pass while each keeps its own state.
"""

from __future__ import annotations

import math
from collections import deque

import torch
from torch import Tensor

from actlab.features import OBSERVATION_IS_PAD

MERGES = ("latest", "average", "ensemble")


class ObservationHistory:
    """The last `n_obs_steps` observations of a stream, stacked on a time axis as the training windows are."""

    def __init__(self, n_obs_steps: int, input_keys: list[str]):
        self.n_obs_steps = n_obs_steps
        self.input_keys = input_keys
        self.frames: deque[dict[str, Tensor]] = deque(maxlen=n_obs_steps)

    def reset(self) -> None:
        self.frames.clear()

    def observe(self, observation: dict[str, Tensor]) -> dict[str, Tensor]:
        """The network's input for the current (B, ...) observation. With n_obs_steps > 1: the last
        n_obs_steps observations stacked on a time axis; before the episode has that many, the first one
        is repeated and flagged in `observation_is_pad` (as the training windows do)."""
        if self.n_obs_steps == 1:
            return observation
        self.frames.append({k: observation[k] for k in self.input_keys if k in observation})
        missing = self.n_obs_steps - len(self.frames)
        frames = [self.frames[0]] * missing + list(self.frames)
        out = {k: torch.stack([f[k] for f in frames], dim=1) for k in frames[-1]}
        first = next(iter(out.values()))
        pad = torch.arange(self.n_obs_steps) < missing
        out[OBSERVATION_IS_PAD] = pad.expand(first.shape[0], self.n_obs_steps).to(first.device)
        return out


class ActionPlan:
    """The actions planned for future ticks. A (B, T, A) chunk predicted from the observation of tick t0
    plans ticks t0 .. t0 + horizon - 1; ticks that passed while it was computed are dropped, and where it
    overlaps actions already planned the predictions for a tick are merged: `latest` (the newest chunk
    wins), `average` (their mean), or `ensemble` (ACT's temporal ensemble, Algorithm 2 of the paper: weights
    exp(-coeff * i), i = 0 for the oldest chunk that planned the tick). Sums are kept in float64."""

    def __init__(self, horizon: int, merge: str = "latest", coeff: float = 0.01):
        if merge not in MERGES:
            raise ValueError(f"merge={merge!r} is not one of {list(MERGES)}")
        self.horizon, self.merge, self.coeff = horizon, merge, coeff
        self.reset()

    def reset(self) -> None:
        # tick -> [weighted sum of predictions (B, A) float64, sum of weights, number of predictions]
        self.planned: dict[int, list] = {}

    def remaining(self, tick: int) -> int:
        """Planned ticks from `tick` on."""
        return sum(1 for t in self.planned if t >= tick)

    def add(self, chunk: Tensor, observed_at: int, now: int) -> int:
        """Adds a chunk predicted from tick `observed_at`'s observation; returns how many of its actions
        were already too late (their ticks passed while it was computed)."""
        late = max(0, min(now - observed_at, self.horizon))
        values = chunk[:, late : self.horizon].to(torch.float64)
        for i in range(values.shape[1]):
            tick, action = observed_at + late + i, values[:, i]
            entry = self.planned.get(tick)
            if entry is None or self.merge == "latest":
                self.planned[tick] = [action, 1.0, 1]
                continue
            weight = math.exp(-self.coeff * entry[2]) if self.merge == "ensemble" else 1.0
            entry[0] = entry[0] + weight * action
            entry[1] += weight
            entry[2] += 1
        return late

    def pop(self, tick: int, dtype: torch.dtype = torch.float32) -> Tensor | None:
        """The (B, A) action for `tick` (None when nothing is planned: an underrun); forgets older ticks."""
        for t in [t for t in self.planned if t < tick]:
            del self.planned[t]
        entry = self.planned.pop(tick, None)
        return None if entry is None else (entry[0] / entry[1]).to(dtype)


class ActionQueue:
    """`select_action`'s actions for one stream: the first `n_action_steps` actions of a chunk, then a new
    chunk; with `temporal_ensemble_coeff`, a chunk every tick, each action the temporal ensemble of every
    chunk that planned it."""

    def __init__(self, chunk_size: int, n_action_steps: int, temporal_ensemble_coeff: float | None = None):
        self.ensembling = temporal_ensemble_coeff is not None
        horizon = chunk_size if self.ensembling else n_action_steps
        self.plan = ActionPlan(horizon, "ensemble" if self.ensembling else "latest", temporal_ensemble_coeff or 0.0)
        self.tick = 0
        self.dtype = torch.float32  # the last chunk's, for the actions popped from it

    def reset(self) -> None:
        self.plan.reset()
        self.tick = 0

    @property
    def needs_chunk(self) -> bool:
        return self.ensembling or self.plan.remaining(self.tick) == 0

    def __len__(self) -> int:
        """Actions left before a new chunk is needed."""
        return self.plan.remaining(self.tick)

    def add_chunk(self, chunk: Tensor) -> None:
        """Takes a (B, chunk_size, A) prediction from the current observation."""
        self.plan.add(chunk, self.tick, self.tick)
        self.dtype = chunk.dtype

    def pop(self) -> Tensor:
        """The (B, A) action to execute now."""
        action = self.plan.pop(self.tick, self.dtype)
        self.tick += 1
        return action


class TemporalEnsembler:
    """ACT's temporal ensembling as LeRobot's `ACTTemporalEnsembler` exposes it: `update(chunk)` takes the
    chunk predicted now and returns the action to execute now (an ActionQueue that is queried every tick)."""

    def __init__(self, coeff: float, chunk_size: int):
        self.queue = ActionQueue(chunk_size, 1, coeff)

    def reset(self) -> None:
        self.queue.reset()

    def update(self, chunk: Tensor) -> Tensor:
        self.queue.add_chunk(chunk)
        return self.queue.pop()


class ActionSelector:
    """One stream's observation history and action queue.

    selector.observe(obs)        -> the network's input (with n_obs_steps > 1: the recent history)
    selector.needs_chunk         -> whether a new chunk must be predicted before the next action
    selector.add_chunk(chunk)    -> takes a (B, chunk_size, A) prediction
    selector.pop()               -> the (B, A) action to execute now
    """

    def __init__(self, config, input_keys: list[str]):
        """`config` has ACT's n_obs_steps, chunk_size, n_action_steps and temporal_ensemble_coeff."""
        self.history = ObservationHistory(config.n_obs_steps, input_keys)
        self.actions = ActionQueue(config.chunk_size, config.n_action_steps, config.temporal_ensemble_coeff)

    def reset(self) -> None:
        """Forget queued actions and observation history: the start of an episode."""
        self.history.reset()
        self.actions.reset()

    def observe(self, observation: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.history.observe(observation)

    @property
    def needs_chunk(self) -> bool:
        return self.actions.needs_chunk

    def add_chunk(self, chunk: Tensor) -> None:
        self.actions.add_chunk(chunk)

    def pop(self) -> Tensor:
        return self.actions.pop()
