"""The policies the control loop asks for chunks: the checkpoint's in this process, or one served by
actlab-serve. Both say what the loop needs in `info` (the server's metadata frame: chunk_size,
n_action_steps, temporal_ensemble_coeff, action_range, ...); the loop chooses actions the same way for both
(actlab.policy.selection)."""

from __future__ import annotations

import numpy as np
import torch

from actlab.deploy.protocol import metadata
from actlab.features import to_policy_batch
from actlab.policy.selection import ObservationHistory


class LocalPolicy:
    """The checkpoint's policy in this process."""

    def __init__(self, policy):
        from importlib.metadata import version

        self.policy = policy
        self.info = metadata(policy, version("actlab"))
        self.history = ObservationHistory(policy.config.n_obs_steps, list(policy.config.input_features))
        self.device = next(policy.parameters()).device

    def reset(self) -> None:
        self.history.reset()

    def observe(self, observation: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """Every tick: the network's input for this observation (with n_obs_steps > 1, the recent ones)."""
        return self.history.observe(to_policy_batch(observation, self.policy.config.input_features, self.device))

    @torch.inference_mode()
    def chunk(self, inputs: dict[str, torch.Tensor]) -> np.ndarray:
        return self.policy.predict_action_chunk(inputs)[0].float().cpu().numpy()

    def close(self) -> None:
        pass


class RemotePolicy:
    """A policy served by actlab-serve (or any server of its protocol). With n_obs_steps > 1 the server's
    history holds the observations it was sent, one per chunk, not one per tick."""

    def __init__(self, url: str, api_key: str | None):
        from actlab.deploy.client import PolicyClient

        self.client = PolicyClient(url, api_key)
        self.info = self.client.metadata

    def reset(self) -> None:
        self.client.reset()

    def observe(self, observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return observation

    def chunk(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        return np.array(self.client.infer(observation)[self.info.get("actions_key", "actions")], np.float32)

    def close(self) -> None:
        self.client.close()
