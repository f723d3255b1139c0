"""The `env` group: one schema per simulator (actlab.sim builds them), and `none`. Adding an env: its schema
here (`@option_schema("env", type)`), its adapter in actlab.sim.envs.ENVS, and `conf/env/<name>.yaml`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from actlab.config.options import SCHEMAS, option_schema, plain, typed
from actlab.config.ranges import COUNT, NON_NEGATIVE_INT, SEED
from actlab.errors import ActlabError

ALOHA_TASKS = ("transfer_cube", "insertion")  # gym-aloha's tasks of the ACT paper
ALOHA_FPS = 50  # gym-aloha's control rate (DT = 0.02 s); the public ALOHA datasets are recorded at it
ALOHA_CAMERAS = ("left_pillar", "right_pillar", "top", "angle", "front_close", "left_wrist", "right_wrist")


@dataclass
class EnvConfig:
    """The simulator a run evaluates in, and how often: the keys every env has (`none` included: a run
    without a simulator reads them as "no evaluation")."""

    name: str = MISSING
    type: str = MISSING  # none | robosuite | aloha (each type has its own schema)
    eval_freq: int = field(default=0, metadata=NON_NEGATIVE_INT)  # 0 = no evaluation during training
    eval_episodes: int = field(default=10, metadata=COUNT)
    final_eval_episodes: int = field(default=10, metadata=NON_NEGATIVE_INT)
    # simulator processes for the training run's evaluations (1 = in the training process)
    eval_workers: int = field(default=1, metadata=COUNT)
    max_steps: int = field(default=400, metadata=COUNT)
    # evaluation episode i uses seed + i (demonstrations use other seeds)
    seed: int = field(default=100_000, metadata=SEED)
    # in-training evaluations record MP4s of their first N episodes (logged too)
    video_episodes: int = field(default=0, metadata=NON_NEGATIVE_INT)
    video_camera: str | None = None  # the camera videos are rendered from (any camera, policy's or not)
    video_size: list[int] = field(default_factory=lambda: [240, 320])  # height, width of video frames

    def check(self) -> None:
        """What can be checked without building the simulator; checked when the config is composed and when
        the simulator is built."""
        if self.type not in SCHEMAS["env"]:
            raise ActlabError(f"env.type={self.type!r} is not one of {env_types()}")
        if not isinstance(self, SCHEMAS["env"][self.type]):
            raise ActlabError(
                f"env.type={self.type} does not fit the keys of env={self.name} ({type(self).__name__}); "
                f"choose an env of that type instead"
            )


@option_schema("env", "none")
@dataclass
class NoEnvConfig(EnvConfig):
    """No simulator: the best checkpoint by validation loss."""

    name: str = "none"
    type: str = "none"


@dataclass
class SimEnvConfig(EnvConfig):
    """The keys of every simulator."""

    task: str | None = None
    # Hz: the simulation's control rate and the recorded data's fps
    control_freq: int = field(default=20, metadata=COUNT)
    cameras: list[str] = field(default_factory=list)  # the cameras the policy sees; [] = state only
    image_size: list[int] = field(default_factory=lambda: [96, 96])  # height, width

    def check(self) -> None:
        super().check()
        check_size("env.image_size", self.image_size)
        check_size("env.video_size", self.video_size)


@option_schema("env", "robosuite")
@dataclass
class RobosuiteEnvConfig(SimEnvConfig):
    """A robosuite task (e.g. Lift) with one robot and its default controller."""

    type: str = "robosuite"
    robot: str = "Panda"
    state_keys: list[str] = field(default_factory=list)  # robosuite observations -> observation.state
    env_state_keys: list[str] = field(default_factory=list)  # -> observation.environment_state
    reward_shaping: bool = True
    # MuJoCo's reflections of the robot in the table and floor; off, a 64x64 camera renders in 38 ms instead
    # of 80 on a CPU (the pixels differ by 0.5/255 on average). Collection and rollouts render alike.
    reflections: bool = True

    def check(self) -> None:
        if not self.task:
            raise ActlabError("env.task is required for a robosuite env (e.g. Lift)")
        super().check()


@option_schema("env", "aloha")
@dataclass
class AlohaEnvConfig(SimEnvConfig):
    """gym-aloha's bimanual ViperX tasks in joint-position control (state and action: 14 joint positions)."""

    type: str = "aloha"
    task: str | None = "transfer_cube"  # transfer_cube | insertion
    control_freq: int = ALOHA_FPS
    cameras: list[str] = field(default_factory=lambda: ["top"])
    image_size: list[int] = field(default_factory=lambda: [480, 640])
    video_camera: str | None = "top"
    video_size: list[int] = field(default_factory=lambda: [480, 640])

    def check(self) -> None:
        if self.task not in ALOHA_TASKS:
            raise ActlabError(f"env.task={self.task!r} is not an ALOHA task; expected one of {sorted(ALOHA_TASKS)}")
        if self.control_freq != ALOHA_FPS:
            raise ActlabError(
                f"env.control_freq={self.control_freq}: the ALOHA simulation runs at {ALOHA_FPS} Hz; "
                f"expected {ALOHA_FPS}"
            )
        super().check()
        video = [self.video_camera] if self.video_camera else []
        for key, names in (("env.cameras", self.cameras), ("env.video_camera", video)):
            unknown = [c for c in names if c not in ALOHA_CAMERAS]
            if unknown:
                raise ActlabError(
                    f"{key}: {unknown} are not cameras of the ALOHA scene; expected some of {list(ALOHA_CAMERAS)}"
                )


def env_types() -> list[str]:
    """The env.type values, `none` first."""
    return ["none", *sorted(set(SCHEMAS["env"]) - {"none"})]


def check_size(key: str, value: Any) -> tuple[int, int]:
    """`value` as [height, width], two positive integers."""
    size = list(value) if value is not None else []
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ActlabError(f"{key}={value}: expected [height, width], two positive integers")
    return int(size[0]), int(size[1])


def env_config(data: Mapping[str, Any] | EnvConfig) -> EnvConfig:
    """The typed env of `data` (a config node, a dict of a run's saved settings, or one already typed), its
    schema chosen by `type`; keys its schema lacks (older versions saved every key) are left out."""
    if isinstance(data, EnvConfig):
        return data
    data = plain(data)
    kind = data.get("type", "none")
    if kind not in SCHEMAS["env"]:
        raise ActlabError(f"env.type={kind!r} is not one of {env_types()}")
    return typed(SCHEMAS["env"][kind], data, f"env={data.get('name')}")
