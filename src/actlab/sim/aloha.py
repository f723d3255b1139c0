"""ALOHA simulation (`env.type: aloha`): gym-aloha's bimanual ViperX tasks of the ACT paper, transfer_cube
and insertion, spoken in the batch-dict language of LeRobot's ALOHA datasets.

- `observation.images.<camera>`: H x W x 3 uint8 at `env.image_size`, rendered at that size by MuJoCo (480 x
  640 is the paper's and the public datasets'); `top` by default, any camera of the scene by name.
- `observation.state`: the 14 joint positions (per arm 6 joints, then the gripper normalised to 0 closed,
  1 open), gym-aloha's `qpos` and LeRobot's `observation.state`.
- `action`: 14 absolute joint positions in the same layout (the grippers as normalised positions).
- reward: the task's staged reward (0-4); success: the reward equals the task's maximum (4).

gym-aloha's gymnasium wrapper renders three 480 x 640 cameras every step whatever it returns, so this adapter
drives the same dm_control physics and task classes itself and renders only the cameras it returns. Object
placements come from gym-aloha's own samplers, seeded with the episode's seed: `reset(seed)` places the
objects where `gym_aloha`'s `env.reset(seed=seed)` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from actlab.config.envs import ALOHA_FPS, EnvConfig, check_size, env_config
from actlab.errors import ActlabError
from actlab.features import ACTION, OBS_IMAGES, OBS_STATE, PolicyFeature

STATE_DIM = 14
STATE_NAMES = [
    f"{side}_{joint}"
    for side in ("left", "right")
    for joint in ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")
]


@dataclass(frozen=True)
class AlohaTask:
    xml: str  # joint-space scene in gym-aloha's assets
    ee_xml: str  # the same scene with mocap bodies welded to the grippers (scripted demonstrations)
    task_class: str  # gym_aloha.tasks.sim
    ee_task_class: str  # gym_aloha.tasks.sim_end_effector
    sampler: str  # gym_aloha.utils: seed -> object pose(s)


TASKS = {
    "transfer_cube": AlohaTask(
        "bimanual_viperx_transfer_cube.xml",
        "bimanual_viperx_end_effector_transfer_cube.xml",
        "TransferCubeTask",
        "TransferCubeEndEffectorTask",
        "sample_box_pose",
    ),
    "insertion": AlohaTask(
        "bimanual_viperx_insertion.xml",
        "bimanual_viperx_end_effector_insertion.xml",
        "InsertionTask",
        "InsertionEndEffectorTask",
        "sample_insertion_pose",
    ),
}


def aloha_task(name: str | None) -> AlohaTask:
    if name not in TASKS:
        raise ActlabError(f"env.task={name!r} is not an ALOHA task; expected one of {sorted(TASKS)}")
    return TASKS[name]


def import_dm_control(render: bool) -> None:
    """Chooses MuJoCo's GL backend (MUJOCO_GL) before dm_control is first imported: dm_control reads it once,
    at import, for the whole process (a scene without cameras may come before one with). Without a backend
    that works, only scenes that render fail."""
    from actlab.sim.rendering import select_gl_backend

    try:
        select_gl_backend()
    except ActlabError:
        if render:
            raise
    import dm_control.mujoco  # noqa: F401


def object_poses(task: str, seed: int) -> np.ndarray:
    """The objects' initial free-joint poses (7 per object: position, quaternion) for `seed`, drawn by
    gym-aloha's own sampler as its `reset(seed=seed)` draws them."""
    from gym_aloha import utils

    poses = getattr(utils, aloha_task(task).sampler)(seed)
    return np.concatenate(poses) if isinstance(poses, tuple) else np.asarray(poses)


def load_physics(xml: str):
    import gym_aloha
    from dm_control import mujoco

    return mujoco.Physics.from_xml_path(str(Path(gym_aloha.__file__).parent / "assets" / xml))


class AlohaEnv:
    """One ALOHA scene in the joint-space control of the ACT paper (what its policies and datasets use)."""

    def __init__(self, cfg: EnvConfig, video: bool = False):
        env_config(cfg).check()  # the schema's rules (actlab.config.envs)
        spec = aloha_task(cfg.task)
        height, width = check_size("env.image_size", cfg.image_size)
        if video and not cfg.video_camera:
            raise ActlabError("videos need env.video_camera (e.g. top)")
        video_size = check_size("env.video_size", cfg.video_size) if video else (0, 0)
        self.cfg = cfg
        self.cameras = list(cfg.cameras)
        import_dm_control(render=bool(self.cameras) or video)
        from dm_control import mujoco
        from dm_control.rl import control
        from gym_aloha.constants import DT
        from gym_aloha.tasks import sim

        self.physics = load_physics(spec.xml)
        scene_cameras = [self.physics.model.id2name(i, "camera") for i in range(self.physics.model.ncam)]
        for key, names in (("env.cameras", self.cameras), ("env.video_camera", [cfg.video_camera] if video else [])):
            unknown = [c for c in names if c not in scene_cameras]
            if unknown:
                raise ActlabError(
                    f"{key}: {unknown} are not cameras of the ALOHA scene; expected some of {scene_cameras}"
                )
        # MuJoCo renders into an offscreen buffer of the model's size (gym-aloha's is 640 x 480): make room
        # for larger images before the first render creates it.
        visual = self.physics.model.vis.global_
        visual.offheight = max(visual.offheight, height, video_size[0])
        visual.offwidth = max(visual.offwidth, width, video_size[1])

        self._bound_poses = sim.BOX_POSE  # gym-aloha's tasks read the episode's object poses from it at reset
        self.task = _observed(getattr(sim, spec.task_class))()
        self.env = control.Environment(
            self.physics, self.task, float("inf"), control_timestep=DT, flat_observation=False
        )
        self._views = {cam: mujoco.Camera(self.physics, height, width, cam) for cam in self.cameras}
        self._video = mujoco.Camera(self.physics, *video_size, cfg.video_camera) if video else None
        self.fps = float(ALOHA_FPS)
        self.action_limits = None  # absolute joint positions; the scene's actuators clamp them to their ranges
        self.features = {f"{OBS_IMAGES}.{cam}": PolicyFeature("VISUAL", (3, height, width)) for cam in self.cameras}
        self.features[OBS_STATE] = PolicyFeature("STATE", (STATE_DIM,))
        self.features[ACTION] = PolicyFeature("ACTION", (STATE_DIM,))
        self.raw: dict[str, Any] = {}

    def _observe(self, timestep) -> dict[str, np.ndarray]:
        self.raw = {**timestep.observation, "reward": float(timestep.reward or 0.0)}
        # A dm_control Camera renders into one buffer of its own and returns a view of it: copy.
        obs = {f"{OBS_IMAGES}.{cam}": view.render().copy() for cam, view in self._views.items()}
        obs[OBS_STATE] = self.raw["qpos"].astype(np.float32)
        return obs

    def reset(self, seed: int) -> dict[str, np.ndarray]:
        self._bound_poses[0] = object_poses(self.cfg.task, seed)
        return self._observe(self.env.reset())

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool]:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (STATE_DIM,):
            raise ActlabError(f"an ALOHA action has {STATE_DIM} joint positions; got shape {list(action.shape)}")
        obs = self._observe(self.env.step(action))
        reward = self.raw["reward"]
        return obs, reward, reward >= self.task.max_reward

    def render(self) -> np.ndarray:
        if self._video is None:
            raise ActlabError("this ALOHA env was made without video=True")
        return self._video.render().copy()

    def close(self) -> None:
        for view in [*self._views.values(), self._video]:
            if view is not None:
                view._scene.free()  # what physics.render() does with its cameras (Camera has no free())
        self._views, self._video = {}, None
        self.physics.free()


def _observed(task_class: type) -> type:
    """gym-aloha's task with an observation of joint positions and object poses only: its own renders three
    480 x 640 cameras each step."""

    class Observed(task_class):
        def get_observation(self, physics) -> dict[str, np.ndarray]:
            return {"qpos": self.get_qpos(physics), "env_state": self.get_env_state(physics)}

    Observed.__name__ = task_class.__name__
    return Observed
