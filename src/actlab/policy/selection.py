"""Choosing the action to execute now from predicted chunks: the state of one stream of `select_action`
calls (one episode of one robot or simulator), kept apart from the network so that a batch of streams
(vectorised evaluation, several robots) shares one forward pass while each keeps its own state.

    selector.observe(obs)        -> the network's input (with n_obs_steps > 1: the recent history)
    selector.needs_chunk         -> whether a new chunk must be predicted before the next action
    selector.add_chunk(chunk)    -> takes a (B, chunk_size, A) prediction
    selector.pop()               -> the (B, A) action to execute now
"""

from __future__ import annotations

from collections import deque

import torch
from torch import Tensor

from actlab.policy.config import OBSERVATION_IS_PAD, ACTArchitecture


class TemporalEnsembler:
    """Online exponentially weighted average of overlapping chunks (ACT paper, Algorithm 2).

    The action executed at time t averages every chunk that predicted t, with weights exp(-coeff * i),
    i = 0 for the oldest of those chunks.
    """

    def __init__(self, coeff: float, chunk_size: int):
        self.weights = torch.exp(-coeff * torch.arange(chunk_size, dtype=torch.float64))
        self.reset()

    def reset(self) -> None:
        self.weighted_sum: Tensor | None = None  # (B, chunk, A): sum of w * action for each future step
        self.weight_sum: Tensor | None = None  # (chunk,)
        self.count: Tensor | None = None  # (chunk,) how many chunks predicted each future step

    def update(self, chunk: Tensor) -> Tensor:
        """Adds a (B, chunk_size, A) chunk predicted now and returns the (B, A) action to execute now."""
        chunk64 = chunk.to(torch.float64)
        weights = self.weights.to(chunk.device)
        if self.weighted_sum is None:
            self.weighted_sum = chunk64 * weights[0]
            self.weight_sum = weights[:1].expand(chunk.shape[1]).clone()
            self.count = torch.ones(chunk.shape[1], dtype=torch.long, device=chunk.device)
        else:
            w = weights[self.count]  # the new chunk is the count-th contributor of each step
            self.weighted_sum = torch.cat(
                [self.weighted_sum + chunk64[:, :-1] * w[:, None], chunk64[:, -1:] * weights[0]], 1
            )
            self.weight_sum = torch.cat([self.weight_sum + w, weights[:1]])
            self.count = torch.cat([self.count + 1, self.count.new_ones(1)])
        action = self.weighted_sum[:, 0] / self.weight_sum[0]
        self.weighted_sum, self.weight_sum, self.count = self.weighted_sum[:, 1:], self.weight_sum[1:], self.count[1:]
        return action.to(chunk.dtype)


class ActionSelector:
    """One stream's queue of the last chunk's first `n_action_steps` actions (or the temporal ensemble of
    every chunk, when `temporal_ensemble_coeff` is set) and, with n_obs_steps > 1, its recent observations."""

    def __init__(self, config: ACTArchitecture, input_keys: list[str]):
        self.config = config
        self.input_keys = input_keys
        self.reset()

    def reset(self) -> None:
        """Forget queued actions and observation history: the start of an episode."""
        coeff = self.config.temporal_ensemble_coeff
        self.ensembler = TemporalEnsembler(coeff, self.config.chunk_size) if coeff is not None else None
        self.queue: deque[Tensor] = deque(maxlen=self.config.n_action_steps)
        self.history: deque[dict[str, Tensor]] = deque(maxlen=self.config.n_obs_steps)
        self.ensembled: Tensor | None = None

    def observe(self, observation: dict[str, Tensor]) -> dict[str, Tensor]:
        """The network's input for the current (B, ...) observation. With n_obs_steps > 1: the last
        n_obs_steps observations stacked on a time axis; before the episode has that many, the first one
        is repeated and flagged in `observation_is_pad` (as the training windows do)."""
        if self.config.n_obs_steps == 1:
            return observation
        self.history.append({k: observation[k] for k in self.input_keys if k in observation})
        steps = self.config.n_obs_steps
        missing = steps - len(self.history)
        frames = [self.history[0]] * missing + list(self.history)
        out = {k: torch.stack([f[k] for f in frames], dim=1) for k in frames[-1]}
        first = next(iter(out.values()))
        pad = torch.arange(steps) < missing
        out[OBSERVATION_IS_PAD] = pad.expand(first.shape[0], steps).to(first.device)
        return out

    @property
    def needs_chunk(self) -> bool:
        return self.ensembler is not None or not self.queue

    def add_chunk(self, chunk: Tensor) -> None:
        if self.ensembler is not None:
            self.ensembled = self.ensembler.update(chunk)
        else:
            self.queue.extend(chunk[:, : self.config.n_action_steps].transpose(0, 1))

    def pop(self) -> Tensor:
        if self.ensembler is not None:
            action, self.ensembled = self.ensembled, None
            return action
        return self.queue.popleft()
