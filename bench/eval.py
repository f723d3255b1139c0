"""Simulator evaluation throughput: episodes/s of `actlab-eval`'s rollout engine with N worker processes
against 1 (the simulator in the evaluating process), on robosuite Lift with a `model=tiny`-sized policy,
state-only and with two 96x96 cameras (rendering dominates). Every episode runs its full length (an
untrained policy never succeeds), so each setting does the same work. Worker start-up (a fresh
interpreter importing robosuite) is timed apart.

    python -m bench eval        # about 5 minutes on 2 AVX2 cores
"""

from __future__ import annotations

import time

from bench.common import table

EPISODES, MAX_STEPS = 8, 60
TINY = dict(
    chunk_size=20, n_action_steps=10, dim_model=128, n_heads=4, dim_feedforward=512, n_encoder_layers=2,
    n_vae_encoder_layers=2, latent_dim=16,
)  # fmt: skip


def lift_config(cameras: list[str]):
    """`env=lift` with these cameras, composed from conf/ as `train.py` would."""
    import tempfile

    from actlab.config.compose import compose_train

    with tempfile.TemporaryDirectory() as tmp:
        return compose_train(["env=lift", f"env.cameras=[{','.join(cameras)}]"], tmp).env


def untrained_policy(features: dict):
    import torch

    from actlab.policy import ACTPolicy, ACTPolicyConfig

    torch.manual_seed(0)
    config = ACTPolicyConfig(
        input_features={k: f for k, f in features.items() if f.type != "ACTION"},
        output_features={"action": features["action"]},
        encoder={"name": "resnet18", "pretrained": None},
        **TINY,
    )
    return ACTPolicy(config).eval()


def throughput(env_cfg, workers: int) -> tuple[float, float]:
    """(episodes/s, start-up seconds) of EPISODES episodes with `workers` simulator processes (0 = in-process)."""
    from actlab.sim.envs import make_env
    from actlab.sim.runner import LocalRunner, make_runners, run_episodes

    started = time.perf_counter()
    env = make_env(env_cfg) if workers == 0 else None
    runners = [LocalRunner(env)] if workers == 0 else make_runners(env_cfg, workers, video=False)
    runners[0].submit("features")
    policy = untrained_policy(runners[0].result())
    startup = time.perf_counter() - started
    try:
        started = time.perf_counter()
        results = run_episodes(policy, runners, EPISODES, MAX_STEPS, seed=100_000, progress=False)
        seconds = time.perf_counter() - started
    finally:
        for runner in runners:
            runner.close()
        if env is not None:
            env.close()
    assert all(r.length == MAX_STEPS for r in results)
    return EPISODES / seconds, startup


def main() -> None:
    rows = []
    for name, cameras in (("state only", []), ("2 cameras 96x96", ["agentview", "robot0_eye_in_hand"])):
        env_cfg = lift_config(cameras)
        base, _ = throughput(env_cfg, 0)
        rows.append([name, "1 (in-process)", f"{base:.2f}", "1.00", "-"])
        for workers in (2, 4):
            rate, startup = throughput(env_cfg, workers)
            rows.append([name, str(workers), f"{rate:.2f}", f"{rate / base:.2f}", f"{startup:.1f} s"])
    table(
        f"eval: robosuite Lift, {EPISODES} episodes x {MAX_STEPS} steps, tiny policy, batched inference",
        ["observations", "workers", "episodes/s", "ratio", "worker start-up"],
        rows,
    )
