"""The one simulator runner: `SimRunner(env_cfg, ...).run(policy) -> metrics` (diffusion_policy's env runner),
used by the training run's evaluations, `actlab-eval` and, through `EpisodeRunner`, by `robot=sim`.

A policy runs whole episodes in a simulator, in this process or in worker processes.

Each simulator lives in an `EpisodeRunner` (the same class in this process and in a worker process); the
policy stays in this process and runs one batched forward pass for every simulator that needs a new
chunk, while each simulator keeps its own action queue (`ActionSelector`). Episode i starts from seed
`seed + i` whichever runner plays it, so results do not depend on the number of workers (up to float
differences between batch sizes). The first `videos` episodes are recorded as MP4s rendered from
`env.video_camera`, with the step and the outcome written on every frame.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from actlab.errors import ActlabError
from actlab.features import check_action, check_provides, to_policy_batch
from actlab.policy import ACTPolicy
from actlab.policy.selection import ActionSelector
from actlab.sim.envs import SimEnv, make_env
from actlab.sim.video import VideoWriter, overlay
from actlab.sim.workers import InProcess, Worker, start_workers

Observation = dict[str, np.ndarray]


def check_compatible(policy: ACTPolicy, env_features: dict) -> None:
    """Fails with one line when the simulator cannot produce what the policy reads or takes."""
    wanted = {**policy.config.input_features, **policy.config.output_features}
    hint = "check env.cameras / env.image_size / env.state_keys against the dataset"
    check_provides(wanted, env_features, "the env", hint)


@dataclass
class EpisodeResult:
    episode: int
    seed: int
    success: bool
    reward: float  # summed over the episode
    length: int  # steps, the successful one included
    video: str | None = None


class EpisodeRunner:
    """The simulator side of episodes: reset with a seed, step, and record a video when asked."""

    def __init__(self, env: SimEnv):
        self.env = env
        self.writer: VideoWriter | None = None
        self.steps = 0

    def features(self) -> dict:
        return self.env.features

    def reset(self, seed: int, video: str | None) -> Observation:
        obs = self.env.reset(seed)
        self.steps = 0
        if video is not None:
            self.writer = VideoWriter(video, self.env.fps)
            self.writer.write(overlay(self.env.render(), [f"seed {seed}", "step 0"]))
        return obs

    def step(self, action: np.ndarray) -> tuple[Observation, float, bool]:
        obs, reward, success = self.env.step(action)
        self.steps += 1
        if self.writer is not None:
            lines = [f"step {self.steps}", "SUCCESS" if success else f"reward {reward:.2f}"]
            self.writer.write(overlay(self.env.render(), lines, (90, 255, 90) if success else (255, 255, 255)))
        return obs, reward, success

    def finish(self) -> str | None:
        """Closes the episode's video; returns its path."""
        if self.writer is None:
            return None
        self.writer.close()
        path, self.writer = str(self.writer.path), None
        return path

    def close(self) -> None:
        self.finish()
        self.env.close()


class LocalRunner(InProcess):
    """An EpisodeRunner in this process, behind the same submit/result calls as a worker."""

    def __init__(self, env: SimEnv):
        super().__init__(EpisodeRunner(env))

    def close(self) -> None:
        self.target.finish()  # the env belongs to the caller


def _episode_runner(env_cfg: dict, video: bool) -> EpisodeRunner:
    return EpisodeRunner(make_env(OmegaConf.create(env_cfg), video=video))


def make_runners(env_cfg: DictConfig, num_workers: int, video: bool) -> list[Worker]:
    """`num_workers` worker processes, each with its own simulator (built in parallel)."""
    config = OmegaConf.to_container(env_cfg, resolve=True) if OmegaConf.is_config(env_cfg) else asdict(env_cfg)
    return start_workers(num_workers, "an evaluation worker", _episode_runner, config, video)


@torch.inference_mode()
def select_actions(policy: ACTPolicy, selectors: list[ActionSelector], observations: list[Observation]) -> list:
    """The action of each stream: one forward pass for every stream that needs a new chunk."""
    device = next(policy.parameters()).device
    inputs = [
        selector.observe(to_policy_batch(obs, policy.config.input_features, device))
        for selector, obs in zip(selectors, observations, strict=True)
    ]
    need = [i for i, selector in enumerate(selectors) if selector.needs_chunk]
    if need:
        chunks = policy.predict_action_chunk({k: torch.cat([inputs[i][k] for i in need]) for k in inputs[need[0]]})
        for row, i in enumerate(need):
            selectors[i].add_chunk(chunks[row : row + 1])
    return [selector.pop()[0].cpu().numpy() for selector in selectors]


@dataclass
class _Playing:
    episode: int
    obs: Observation
    reward: float = 0.0
    steps: int = 0


def check_step(action: np.ndarray, dim: int, state: _Playing, seed: int) -> None:
    """Fails with one line when the policy's action must not reach the simulator (NaN, Inf, a wrong length)."""
    problem = check_action(action, dim)
    if problem:
        raise ActlabError(
            f"episode {state.episode} (seed {seed + state.episode}), step {state.steps}: the policy's action "
            f"{problem}; check the checkpoint's weights and statistics"
        )


def run_episodes(
    policy: ACTPolicy,
    runners: list,
    episodes: int,
    max_steps: int,
    seed: int,
    video_dir: Path | None = None,
    videos: int = 0,
    progress: bool = True,
) -> list[EpisodeResult]:
    """Plays episodes 0..episodes-1 (episode i from seed + i) on the runners, each until success or
    `max_steps`; returns their results in episode order."""
    selectors = [policy.new_selector() for _ in runners]
    action_dim = policy.config.action_feature.shape[0]
    playing: dict[int, _Playing] = {}
    results: list[EpisodeResult] = []
    queue = iter(range(episodes))

    def start(i: int) -> None:
        episode = next(queue, None)
        if episode is None:
            return
        video = str(video_dir / f"episode_{episode:03d}.mp4") if video_dir is not None and episode < videos else None
        runners[i].submit("reset", seed + episode, video)
        selectors[i].reset()
        playing[i] = _Playing(episode, obs=None)

    was_training = policy.training
    try:
        with tqdm(total=episodes, desc="episodes", unit="episode", disable=not progress, leave=False) as bar:
            for i in range(len(runners)):
                start(i)
            for i in playing:
                playing[i].obs = runners[i].result()
            while playing:
                active = sorted(playing)
                actions = select_actions(policy, [selectors[i] for i in active], [playing[i].obs for i in active])
                for i, action in zip(active, actions, strict=True):
                    check_step(action, action_dim, playing[i], seed)
                    runners[i].submit("step", action)
                for i in active:
                    state = playing[i]
                    state.obs, reward, success = runners[i].result()
                    state.reward += reward
                    state.steps += 1
                    if not success and state.steps < max_steps:
                        continue
                    runners[i].submit("finish")
                    video = runners[i].result()
                    results.append(
                        EpisodeResult(state.episode, seed + state.episode, success, state.reward, state.steps, video)
                    )
                    bar.update()
                    del playing[i]
                    start(i)
                    if i in playing:
                        playing[i].obs = runners[i].result()
    finally:
        policy.reset()
        policy.train(was_training)
    return sorted(results, key=lambda r: r.episode)


def summarize(results: list[EpisodeResult]) -> dict[str, float]:
    """success_rate, avg_reward and avg_length, with 95 % confidence intervals: Wilson's score interval
    for the success rate, mean +- 1.96 standard errors for reward and length."""
    n = len(results)
    successes = sum(r.success for r in results)
    out = {"episodes": n, "success_rate": successes / n}
    low, high = wilson_interval(successes, n)
    out["success_rate_ci95_low"], out["success_rate_ci95_high"] = low, high
    for key, values in (("avg_reward", [r.reward for r in results]), ("avg_length", [r.length for r in results])):
        mean = float(np.mean(values))
        half = 1.96 * float(np.std(values, ddof=1)) / math.sqrt(n) if n > 1 else float("nan")
        out[key], out[f"{key}_ci95"] = mean, half
    return out


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


class SimRunner:
    """Evaluation episodes of `env_cfg`'s simulator: episode i from seed `seed + i`, each until success or
    `max_steps`, in this process (on `env`, when the caller already has the simulator, else one built here)
    or in `workers` processes; the first `videos` episodes as MP4s. `run(policy)` returns success_rate,
    avg_reward (summed per episode) and avg_length with 95 % confidence intervals, and keeps the episodes'
    results in `results`; the global numpy generator is restored afterwards, so evaluating does not perturb
    training."""

    def __init__(
        self,
        env_cfg: DictConfig,
        episodes: int,
        max_steps: int,
        seed: int,
        workers: int = 1,
        videos: int = 0,
        env: SimEnv | None = None,
    ):
        self.env_cfg, self.episodes, self.max_steps, self.seed = env_cfg, episodes, max_steps, seed
        self.workers, self.videos = workers, min(videos, episodes)
        self.own_env = env is None and workers <= 1
        self.env = make_env(env_cfg, video=self.videos > 0) if self.own_env else env
        self.results: list[EpisodeResult] = []

    def run(self, policy: ACTPolicy, video_dir: Path | None = None, progress: bool = False) -> dict[str, float]:
        numpy_state = np.random.get_state()
        if self.workers <= 1:
            runners = [LocalRunner(self.env)]
        else:
            runners = make_runners(self.env_cfg, min(self.workers, self.episodes), self.videos > 0)
        try:
            runners[0].submit("features")
            check_compatible(policy, runners[0].result())
            videos = self.videos if video_dir is not None else 0
            self.results = run_episodes(
                policy, runners, self.episodes, self.max_steps, self.seed, video_dir, videos, progress
            )
        finally:
            for runner in runners:
                runner.close()
            np.random.set_state(numpy_state)
        return summarize(self.results)

    def close(self) -> None:
        if self.own_env and self.env is not None:
            self.env.close()
