"""Robot adapters: what the control loop drives. An adapter is any object with

    reset()                 -> None   start an episode (move home, reset the scene, ...)
    get_observation()       -> dict   the current observation, keyed by the policy's feature names:
                                      vectors (D,) float, images H x W x 3 uint8
    send_action(action)     -> None   apply a (A,) action
    close()                 -> None

and, optionally, `done` (the episode ended: success or a time limit) and `result()` (a dict of episode
metrics). `robot=<name>` picks `conf/robot/<name>.yaml`, whose `_target_` names the class (Hydra's
`instantiate`), so an adapter for a real robot is one class and one yaml file of your own.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Protocol

import numpy as np

from actlab.config.schema import EnvConfig
from actlab.errors import ActlabError
from actlab.sim.envs import make_env
from actlab.sim.runner import EpisodeResult, EpisodeRunner


class Robot(Protocol):
    def reset(self) -> None: ...

    def get_observation(self) -> dict[str, np.ndarray]: ...

    def send_action(self, action: np.ndarray) -> None: ...

    def close(self) -> None: ...


class SimRobot:
    """A simulator (`env=...`, e.g. robosuite Lift) as a robot, driven by the simulator runner's EpisodeRunner:
    episode i starts from seed `seed + i`, the simulator steps once per `send_action`, and the episode is done
    on success or after `max_steps`."""

    def __init__(self, env: EnvConfig, seed: int | None = None, max_steps: int | None = None):
        sim = make_env(env)
        if sim is None:
            raise ActlabError("robot=sim needs a simulator: env=<task> (e.g. env=lift) or a checkpoint trained in one")
        self.runner = EpisodeRunner(sim)
        self.seed = env.seed if seed is None else seed
        self.max_steps = max_steps or env.max_steps
        self.features = sim.features
        self.episode = -1
        self.observation: dict[str, np.ndarray] = {}

    def reset(self) -> None:
        self.episode += 1
        self.observation = self.runner.reset(self.seed + self.episode, None)
        self.reward, self.success = 0.0, False

    def get_observation(self) -> dict[str, np.ndarray]:
        return self.observation

    def send_action(self, action: np.ndarray) -> None:
        self.observation, reward, success = self.runner.step(action)
        self.reward += reward
        self.success = self.success or success

    @property
    def done(self) -> bool:
        return self.success or self.runner.steps >= self.max_steps

    def result(self) -> dict[str, Any]:
        seed = self.seed + self.episode
        result = asdict(EpisodeResult(self.episode, seed, self.success, self.reward, self.runner.steps))
        del result["video"]  # the loop records none
        return result

    def close(self) -> None:
        self.runner.close()
