"""CPU cost of one ALOHA simulation step (physics + the top camera's render) at the image sizes a run can
choose, against the physics alone and against gym-aloha's own gymnasium env (LeRobot's: every step renders
three cameras at 480x640, whatever it returns), all on transfer_cube in the same run. The arms follow the
scripted expert's joint trajectory, so the steps include the cube's contacts and the grasp.

    python -m bench aloha_step        # about a minute on 2 cores
"""

from __future__ import annotations

import time

import numpy as np
from omegaconf import OmegaConf

from bench.common import table

STEPS, WARMUP, SEED = 150, 10, 0
SIZES = [(480, 640), (240, 320), (120, 160), (64, 64)]


def env_config(cameras: list[str], size: tuple[int, int]):
    cfg = OmegaConf.load("conf/env/aloha.yaml")
    cfg.cameras, cfg.image_size = cameras, list(size)
    return cfg


def expert_actions() -> np.ndarray:
    from actlab.sim.aloha import object_poses
    from actlab.sim.aloha_expert import AlohaExpert

    expert = AlohaExpert("transfer_cube")
    return expert.joint_trajectory(object_poses("transfer_cube", SEED))[: WARMUP + STEPS]


def ms_per_step(step, actions: np.ndarray) -> float:
    for action in actions[:WARMUP]:
        step(action)
    started = time.perf_counter()
    for action in actions[WARMUP:]:
        step(action)
    return (time.perf_counter() - started) / (len(actions) - WARMUP) * 1000


def actlab_step_ms(cameras: list[str], size: tuple[int, int], actions: np.ndarray) -> float:
    from actlab.sim.envs import make_env

    env = make_env(env_config(cameras, size))
    try:
        env.reset(SEED)
        return ms_per_step(env.step, actions)
    finally:
        env.close()


def gym_aloha_step_ms(actions: np.ndarray) -> float:
    from gym_aloha.env import AlohaEnv

    env = AlohaEnv("transfer_cube", obs_type="pixels_agent_pos")
    env.reset(seed=SEED)
    return ms_per_step(env.step, actions)


def main() -> None:
    actions = expert_actions()  # also selects MuJoCo's GL backend before gym-aloha imports dm_control
    physics = actlab_step_ms([], SIZES[0], actions)
    reference = actlab_step_ms(["top"], SIZES[0], actions)
    rows = [["physics only (no camera)", f"{physics:.1f}", "-", f"{physics / reference:.2f}"]]
    for size in SIZES:
        ms = reference if size == SIZES[0] else actlab_step_ms(["top"], size, actions)
        rows.append([f"top {size[0]}x{size[1]}", f"{ms:.1f}", f"{ms - physics:.1f}", f"{ms / reference:.2f}"])
    gym = gym_aloha_step_ms(actions)
    rows.append(["gym-aloha env (3 cameras 480x640)", f"{gym:.1f}", f"{gym - physics:.1f}", f"{gym / reference:.2f}"])
    table(
        f"aloha_step: transfer_cube, {STEPS} steps of the scripted trajectory, CPU (MuJoCo via dm_control)",
        ["env=aloha step", "ms/step", "of which rendering", "vs top 480x640"],
        rows,
    )
