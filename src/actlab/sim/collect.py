"""Scripted demonstrations written as a LeRobot dataset with LeRobot's own writer.

The dataset is collected once into `${paths.data_dir}/<name>` (published by `atomic_dir` when complete)
and reused by later runs with the same env and collection settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from actlab.config.datasets import DatasetConfig, DemoCollectionConfig
from actlab.config.envs import EnvConfig
from actlab.errors import ActlabError
from actlab.lerobot_io.writer import lerobot_writer
from actlab.sim.envs import SimEnv, make_env
from actlab.sim.workers import InProcess, start_workers

log = logging.getLogger(__name__)


def _lift_expert() -> Callable:
    # Imported when collecting, after make_env has imported robosuite (quietly): the expert needs its maths.
    from actlab.sim.lift_expert import LiftExpert

    return LiftExpert()


def _aloha_expert(task: str) -> Callable[[], Callable]:
    def make() -> Callable:
        from actlab.sim.aloha_expert import AlohaExpert

        return AlohaExpert(task)

    return make


# env.task -> scripted expert (a callable on the simulator's raw observation, with a `reset()` per episode)
EXPERTS: dict[str, Callable[[], Callable]] = {
    "Lift": _lift_expert,
    "transfer_cube": _aloha_expert("transfer_cube"),
    "insertion": _aloha_expert("insertion"),
}
HOLD_STEPS = 10  # frames recorded after success, so the policy learns to keep holding the object


def demonstrations_dirname(env: EnvConfig, collect: DemoCollectionConfig) -> str:
    cams = "-".join(env.cameras) + f"_{env.image_size[0]}x{env.image_size[1]}" if env.cameras else "state"
    settings = {"env": _plain(env), "collect": _plain(collect)}
    for key in ("eval_freq", "eval_episodes", "final_eval_episodes", "eval_workers", "seed", "name"):
        settings["env"].pop(key, None)
    settings["collect"].pop("workers", None)  # the same dataset whatever the number of recorders
    if settings["env"].get("reflections") is True:
        settings["env"].pop("reflections")  # the default: the same folder as before the key existed
    settings["noise"] = "per_seed"  # executed-action noise drawn per seed (before: one stream over all episodes)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return f"{env.task.lower()}_{cams}_{collect.episodes}ep_{digest}"


def ensure_demonstrations(env_cfg: EnvConfig, collect: DemoCollectionConfig, data_dir: Path) -> Path:
    """The dataset folder for these settings, collected first if it is not there yet."""
    if env_cfg.type == "none" or not env_cfg.task:
        raise ActlabError("dataset.collect needs a simulator: choose one with env=<task> (e.g. env=lift)")
    if env_cfg.task not in EXPERTS:
        raise ActlabError(f"no scripted expert for env.task={env_cfg.task}; experts exist for {sorted(EXPERTS)}")
    root = Path(data_dir) / demonstrations_dirname(env_cfg, collect)
    if (root / "meta" / "info.json").is_file():
        log.info(f"Demonstrations: reusing {root}")
        return root
    env = make_env(env_cfg)
    try:
        if collect.workers > 1:
            config = _plain(env_cfg), _plain(collect)
            recorders = start_workers(collect.workers, "a demonstration worker", _recorder, *config)
        else:
            recorders = [InProcess(Recorder(env, EXPERTS[env_cfg.task](), collect))]  # env closed below
        try:
            robot_type = getattr(env_cfg, "robot", env_cfg.type)  # an ALOHA env's robot is its type
            collect_demonstrations(env, recorders, collect, root, env_cfg.task, robot_type)
        finally:
            for recorder in recorders:
                recorder.close()
    finally:
        env.close()
    return root


def collect_demonstrations(
    env: SimEnv, recorders: list, cfg: DemoCollectionConfig, root: Path, task: str, robot_type: str | None = None
) -> None:
    """Records episodes from seeds cfg.seed, cfg.seed + 1, ... on the recorders (each runs the next seed
    when it is free) and writes the successful ones in seed order, so the dataset is the same whatever the
    number of recorders: the first `cfg.episodes` seeds the expert succeeds from."""
    next_seed, saved, failed = cfg.seed, 0, 0
    pending: deque = deque()  # the recorders of the episodes in flight, in seed order

    def submit(recorder) -> None:
        nonlocal next_seed
        recorder.submit("record", next_seed)
        pending.append(recorder)
        next_seed += 1

    log.info(f"Collecting {cfg.episodes} scripted {task} demonstrations into {root}")
    with (
        lerobot_writer(
            root, env.features, env.fps, cfg.video, f"actlab/{root.name}", robot_type, getattr(env, "names", None)
        ) as write_episode,
        tqdm(total=cfg.episodes, desc="demonstrations") as bar,
    ):
        for recorder in recorders[: cfg.episodes]:
            submit(recorder)
        while saved < cfg.episodes:
            recorder = pending.popleft()
            frames = recorder.result()
            if frames is None:
                failed += 1
                if failed > max(10, cfg.episodes):
                    raise ActlabError(
                        f"the scripted {task} expert failed {failed} episodes; lower "
                        "dataset.collect.action_noise or raise dataset.collect.max_steps"
                    )
            else:
                write_episode(frames, task)
                saved += 1
                bar.update()
            if saved + len(pending) < cfg.episodes:
                submit(recorder)
    log.info(f"Demonstrations: {saved} episodes saved ({failed} failed attempts discarded)")


class Recorder:
    """A simulator and its scripted expert: `record(seed)` plays one demonstration."""

    def __init__(self, env: SimEnv, expert: Callable, cfg: DemoCollectionConfig):
        self.env, self.expert, self.cfg = env, expert, cfg

    def record(self, seed: int) -> list[dict] | None:
        # The executed actions' noise depends on the seed only, not on the episodes recorded before.
        rng = np.random.default_rng([self.cfg.seed, seed])
        return record_episode(self.env, self.expert, self.cfg, seed, rng)

    def close(self) -> None:
        self.env.close()


def _recorder(env_cfg: dict, collect: dict) -> Recorder:
    env_cfg, collect = OmegaConf.create(env_cfg), OmegaConf.create(collect)
    return Recorder(make_env(env_cfg), EXPERTS[env_cfg.task](), collect)


def record_episode(env: SimEnv, expert, cfg: DemoCollectionConfig, seed: int, rng: np.random.Generator):
    """Frames of one successful episode (recorded actions are the expert's; executed ones may be noisy)."""
    obs = env.reset(seed)
    expert.reset()
    frames, hold = [], None
    for _ in range(cfg.max_steps):
        action = np.asarray(expert(env.raw), dtype=np.float32)
        frames.append({**obs, "action": action})
        executed = action + rng.normal(0.0, cfg.action_noise, action.shape) if cfg.action_noise else action
        if env.action_limits is not None:
            executed = np.clip(executed, *env.action_limits)
        obs, _, success = env.step(executed)
        if success and hold is None:
            hold = HOLD_STEPS
        if hold is not None:
            hold -= 1
            if hold <= 0:
                return frames
    return None


def _plain(node) -> dict:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else asdict(node)


def dataset_config(cfg: DictConfig) -> DatasetConfig:
    """A run config's dataset group as a typed object, with `root` pointing at scripted demonstrations
    (collected first if missing) when the preset collects them (dataset=lift) and no root was given."""
    data: DatasetConfig = OmegaConf.to_object(cfg.dataset)
    if getattr(data, "collect", None) is not None and not data.root:
        data.root = str(ensure_demonstrations(cfg.env, data.collect, Path(cfg.paths.data_dir)))
    return data
