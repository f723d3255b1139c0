"""Simulator adapters: each `env.type` maps to one builder. An adapter speaks the batch-dict language
(`observation.state`, `observation.environment_state`, `observation.images.<camera>`) so rollouts and
demonstration recording never see simulator-specific keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from actlab.config.envs import EnvConfig, env_config
from actlab.errors import ActlabError
from actlab.features import ACTION, OBS_ENV_STATE, OBS_IMAGES, OBS_STATE, PolicyFeature
from actlab.sim.aloha import AlohaEnv


class SimEnv(Protocol):
    cfg: EnvConfig  # what it was built from (worker processes build their own copy from it)
    features: dict[str, PolicyFeature]  # what observations and actions look like
    fps: float
    raw: dict[str, Any]  # the simulator's own last observation (for scripted experts)
    action_limits: tuple[float, float] | None  # the range executed demonstration actions are clipped to, if any

    def reset(self, seed: int) -> dict[str, np.ndarray]: ...

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool]:
        """Returns (observation, reward, success)."""
        ...

    def render(self) -> np.ndarray:
        """An H x W x 3 uint8 frame from `env.video_camera` at `env.video_size` (made with `video=True`)."""
        ...

    def close(self) -> None: ...


def import_robosuite(render: bool):
    """robosuite, with MuJoCo's GL backend chosen first and images in OpenCV (top-down) order.

    robosuite logs through its own console handler as well as the root logger, and warns at import
    about optional extras (macro file, robosuite_models, mink); keep its warnings, once, and drop that.
    """
    if render:
        from actlab.sim.rendering import select_gl_backend

        select_gl_backend()
    logging.disable(logging.WARNING)
    try:
        import robosuite
        from robosuite import macros
    finally:
        logging.disable(logging.NOTSET)
    robosuite_logger = logging.getLogger("robosuite_logs")
    robosuite_logger.handlers.clear()
    robosuite_logger.setLevel(logging.WARNING)
    macros.IMAGE_CONVENTION = "opencv"
    return robosuite


class RobosuiteEnv:
    def __init__(self, cfg: EnvConfig, video: bool = False):
        env_config(cfg).check()  # the schema's rules (actlab.config.envs)
        if video and not cfg.video_camera:
            raise ActlabError("videos need env.video_camera (e.g. agentview)")
        self.cfg = cfg
        self.cameras = list(cfg.cameras)
        height, width = cfg.image_size
        suite = import_robosuite(render=bool(self.cameras) or video)
        # robosuite draws from numpy's global generator, and with hard_reset=False the state its first,
        # construction-time reset leaves behind leaks into later seeded resets (the cube settles ~1e-4 m
        # differently). Building from a fixed seed makes `reset(seed)` the same in every process.
        numpy_state = np.random.get_state()
        np.random.seed(0)
        try:
            self.env = suite.make(
                cfg.task,
                robots=cfg.robot,
                has_renderer=False,
                has_offscreen_renderer=bool(self.cameras) or video,
                use_camera_obs=bool(self.cameras),
                camera_names=self.cameras or "agentview",
                camera_heights=height,
                camera_widths=width,
                control_freq=cfg.control_freq,
                horizon=cfg.max_steps,
                ignore_done=True,
                reward_shaping=cfg.reward_shaping,
                hard_reset=False,
            )
            self.raw = self.env.reset()
            self._set_reflections()
        except Exception as e:
            raise ActlabError(f"robosuite could not make env.task={cfg.task} env.robot={cfg.robot}: {e}") from e
        finally:
            np.random.set_state(numpy_state)
        self.fps = float(cfg.control_freq)
        self.action_limits = (-1.0, 1.0)  # the controller's normalised input range
        self.features = self._features(self.raw)
        self.names = self._names(self.raw)

    def _features(self, raw: dict[str, Any]) -> dict[str, PolicyFeature]:
        features = {}
        for key, names in ((OBS_STATE, self.cfg.state_keys), (OBS_ENV_STATE, self.cfg.env_state_keys)):
            missing = [n for n in names if n not in raw]
            if missing:
                raise ActlabError(
                    f"env.{'state_keys' if key == OBS_STATE else 'env_state_keys'}: {missing} "
                    f"are not robosuite observations of {self.cfg.task} (it has {sorted(raw)})"
                )
            if names:
                features[key] = PolicyFeature(
                    "STATE" if key == OBS_STATE else "ENV", (sum(np.size(raw[n]) for n in names),)
                )
        height, width = self.cfg.image_size
        for cam in self.cameras:
            features[f"{OBS_IMAGES}.{cam}"] = PolicyFeature("VISUAL", (3, height, width))
        features[ACTION] = PolicyFeature("ACTION", (int(self.env.action_dim),))
        return features

    def _names(self, raw: dict[str, Any]) -> dict[str, list[str]]:
        """Per-dimension names, recorded in the dataset (a robot is matched to a policy by them): each
        robosuite observation's own name (`robot0_eef_pos.0`, ...), the controller's action dimensions."""
        names = {}
        for key, keys in ((OBS_STATE, self.cfg.state_keys), (OBS_ENV_STATE, self.cfg.env_state_keys)):
            if keys:
                sizes = {k: int(np.size(raw[k])) for k in keys}
                names[key] = [k if sizes[k] == 1 else f"{k}.{i}" for k in keys for i in range(sizes[k])]
        dim = int(self.env.action_dim)
        osc = ["dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"]  # the default OSC_POSE controller
        names[ACTION] = osc if dim == len(osc) else [f"a{i}" for i in range(dim)]
        return names

    def observation(self, raw: dict[str, Any]) -> dict[str, np.ndarray]:
        obs = {}
        if self.cfg.state_keys:
            obs[OBS_STATE] = np.concatenate([np.ravel(raw[k]) for k in self.cfg.state_keys]).astype(np.float32)
        if self.cfg.env_state_keys:
            obs[OBS_ENV_STATE] = np.concatenate([np.ravel(raw[k]) for k in self.cfg.env_state_keys]).astype(np.float32)
        for cam in self.cameras:
            obs[f"{OBS_IMAGES}.{cam}"] = raw[f"{cam}_image"]
        return obs

    def _set_reflections(self) -> None:
        """`env.reflections` on the offscreen renderer's scene (robosuite draws them by default)."""
        context = getattr(self.env.sim, "_render_context_offscreen", None)
        if context is not None:
            import mujoco

            context.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = int(self.cfg.reflections)

    def reset(self, seed: int) -> dict[str, np.ndarray]:
        # robosuite's placement samplers draw from numpy's global generator.
        np.random.seed(seed)
        self.raw = self.env.reset()
        self._set_reflections()  # a renderer robosuite made anew keeps the setting
        return self.observation(self.raw)

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool]:
        self.raw, reward, _, _ = self.env.step(np.asarray(action, dtype=np.float64))
        return self.observation(self.raw), float(reward), bool(self.env._check_success())

    def render(self) -> np.ndarray:
        height, width = self.cfg.video_size
        try:
            frame = self.env.sim.render(width=width, height=height, camera_name=self.cfg.video_camera)
        except Exception as e:  # noqa: BLE001 - MuJoCo names the bad camera in its own error
            raise ActlabError(f"env.video_camera={self.cfg.video_camera}: cannot render it ({e})") from None
        return np.ascontiguousarray(frame[::-1])  # OpenGL rows run bottom-up; videos use image order

    def close(self) -> None:
        self.env.close()


# env.type -> adapter class: `Adapter(cfg, video=...)` builds the simulator (each type has its schema, with the
# rules that need no simulator, in actlab.config.envs).
ENVS: dict[str, Callable[..., SimEnv]] = {
    "robosuite": RobosuiteEnv,
    "aloha": AlohaEnv,
}


def make_env(cfg: EnvConfig, video: bool = False) -> SimEnv | None:
    """The simulator for `cfg`, or None for env=none; with `video`, able to `render()` video frames."""
    if cfg.type == "none":
        return None
    if cfg.type not in ENVS:
        raise ActlabError(f"env.type={cfg.type!r} is not one of {['none', *sorted(ENVS)]}")
    return ENVS[cfg.type](cfg, video=video)
