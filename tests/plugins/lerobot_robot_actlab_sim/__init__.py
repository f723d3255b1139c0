"""robosuite Lift (actlab's simulator) behind LeRobot's `Robot` interface: a robot type registered in
LeRobot's own registry (`actlab_lift_sim`), found as a `lerobot_robot_*` plugin.

Observations are `"<name>": float` per state dimension (the names the simulator records in its datasets,
e.g. `robot0_eef_pos.0`) and `"<camera>": (H, W, 3)` frames; actions `"<name>": float`. Each `reset()` starts
the next episode from seed `seed + episode` (as actlab-eval does), and `done`/`success` say when the
simulator's episode ended, so the control loop plays the same episodes as actlab-eval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from lerobot.robots import Robot, RobotConfig

from actlab.features import ACTION, OBS_IMAGES, OBS_STATE


@RobotConfig.register_subclass("actlab_lift_sim")
@dataclass
class ActlabLiftSimConfig(RobotConfig):
    env: dict = field(default_factory=dict)  # actlab's env settings (the checkpoint's: robot.env='${env}')
    seed: int | None = None  # episode i from seed + i (default env.seed, as actlab-eval)
    max_steps: int | None = None  # default env.max_steps
    fail_at_step: int | None = None  # get_observation raises at this step of the second episode (tests)


class ActlabLiftSim(Robot):
    config_class = ActlabLiftSimConfig
    name = "actlab_lift_sim"

    def __init__(self, config: ActlabLiftSimConfig):
        super().__init__(config)
        self.config = config
        from omegaconf import OmegaConf

        from actlab.sim.envs import make_env
        from actlab.sim.runner import EpisodeRunner

        env = OmegaConf.create(config.env)
        self.sim = make_env(env)
        self.runner = EpisodeRunner(self.sim)
        self.seed = env.seed if config.seed is None else config.seed
        self.max_steps = config.max_steps or env.max_steps
        self.connected, self.episode, self.success = False, -1, False
        self.observation: dict[str, np.ndarray] = {}

    @cached_property
    def observation_features(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: float for name in self.sim.names.get(OBS_STATE, [])}
        for key, feature in self.sim.features.items():
            if feature.type == "VISUAL":
                _, height, width = feature.shape
                out[key.removeprefix(f"{OBS_IMAGES}.")] = (height, width, 3)
        return out

    @cached_property
    def action_features(self) -> dict[str, type]:
        return {name: float for name in self.sim.names[ACTION]}

    @property
    def is_connected(self) -> bool:
        return self.connected

    def connect(self, calibrate: bool = True) -> None:
        self.connected = True

    @property
    def is_calibrated(self) -> bool:
        return True

    def calibrate(self) -> None:
        pass

    def configure(self) -> None:
        pass

    def reset(self) -> None:
        self.episode += 1
        self.observation = self.runner.reset(self.seed + self.episode, None)
        self.success, self.reward = False, 0.0

    @property
    def done(self) -> bool:
        return self.success or self.runner.steps >= self.max_steps

    def get_observation(self) -> dict[str, Any]:
        if self.config.fail_at_step is not None and self.episode == 1 and self.runner.steps >= self.config.fail_at_step:
            raise ConnectionError("the simulated motor bus stopped answering")
        out: dict[str, Any] = {}
        if OBS_STATE in self.observation:
            out.update(zip(self.sim.names[OBS_STATE], map(float, self.observation[OBS_STATE]), strict=True))
        for key, value in self.observation.items():
            if key.startswith(f"{OBS_IMAGES}."):
                out[key.removeprefix(f"{OBS_IMAGES}.")] = value
        return out

    def send_action(self, action: dict[str, Any]) -> dict[str, Any]:
        vector = np.array([action[name] for name in self.sim.names[ACTION]], np.float32)
        self.observation, reward, success = self.runner.step(vector)
        self.reward += reward
        self.success = self.success or success
        return action

    def disconnect(self) -> None:
        self.connected = False
        self.runner.close()
