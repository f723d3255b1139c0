"""Rollout evaluation: run a policy for whole episodes in a simulator and report plain metrics."""

from __future__ import annotations

import logging

import numpy as np
import torch

from actlab.errors import ActlabError
from actlab.policy import ACTPolicy
from actlab.sim.envs import SimEnv

log = logging.getLogger(__name__)


def check_compatible(policy: ACTPolicy, env: SimEnv) -> None:
    """Fails with one line when the simulator cannot produce what the policy reads or takes."""
    wanted = {**policy.config.input_features, **policy.config.output_features}
    for key, feature in wanted.items():
        have = env.features.get(key)
        if have is None or tuple(have.shape) != tuple(feature.shape):
            got = "nothing" if have is None else f"shape {list(have.shape)}"
            raise ActlabError(
                f"the policy needs '{key}' with shape {list(feature.shape)} but the env gives {got}; "
                "check env.cameras / env.image_size / env.state_keys against the dataset"
            )


def to_batch(obs: dict[str, np.ndarray], device: torch.device | str) -> dict[str, torch.Tensor]:
    """One env observation as a batch of one (images HWC uint8 -> 1x3xHxW)."""
    batch = {}
    for key, value in obs.items():
        tensor = torch.from_numpy(np.ascontiguousarray(value))
        if tensor.ndim == 3:
            tensor = tensor.permute(2, 0, 1)
        batch[key] = tensor.unsqueeze(0).to(device)
    return batch


def evaluate_policy(policy: ACTPolicy, env: SimEnv, episodes: int, max_steps: int, seed: int) -> dict[str, float]:
    """Runs `episodes` episodes (episode i starts from seed + i), each until success or `max_steps`.

    Returns success_rate, avg_reward (summed per episode) and avg_length (steps, success included).
    The global numpy generator is restored afterwards, so evaluating does not perturb training.
    """
    check_compatible(policy, env)
    device = next(policy.parameters()).device
    was_training = policy.training
    numpy_state = np.random.get_state()
    successes, rewards, lengths = [], [], []
    try:
        for episode in range(episodes):
            obs = env.reset(seed + episode)
            policy.reset()
            total, success, steps = 0.0, False, 0
            while steps < max_steps and not success:
                action = policy.select_action(to_batch(obs, device))[0].cpu().numpy()
                obs, reward, success = env.step(action)
                total += reward
                steps += 1
            successes.append(success)
            rewards.append(total)
            lengths.append(steps)
    finally:
        np.random.set_state(numpy_state)
        policy.reset()
        policy.train(was_training)
    return {
        "success_rate": float(np.mean(successes)),
        "avg_reward": float(np.mean(rewards)),
        "avg_length": float(np.mean(lengths)),
    }
