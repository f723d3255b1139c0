"""Deployment latency: the round trip of one observation through `actlab-serve` (a separate process on
localhost, openpi's websocket + msgpack-numpy protocol) against `predict_action_chunk` in-process, and the
control loop's tick jitter at 50 Hz with chunks computed in the background, for the `model=baseline`
architecture with 2 cameras 96x96 (random weights: latency does not depend on them).

    python -m bench serve        # about 2 minutes on 2 cores
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from bench.common import table

CAMERAS = ["observation.images.cam0", "observation.images.cam1"]
ROUNDS, CALLS = 3, 40


def baseline_policy():
    from actlab.policy import ACTPolicy, ACTPolicyConfig, PolicyFeature

    torch.manual_seed(0)
    inputs = {"observation.state": PolicyFeature("STATE", (14,))}
    inputs.update({c: PolicyFeature("VISUAL", (3, 96, 96)) for c in CAMERAS})
    config = ACTPolicyConfig(
        input_features=inputs,
        output_features={"action": PolicyFeature("ACTION", (14,))},
        encoder={"name": "resnet18", "pretrained": None},
        action_range={"min": [-1.0] * 14, "max": [1.0] * 14},
        fps=50.0,
    )
    return ACTPolicy(config).eval()


def robot_observation() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    obs = {c: rng.integers(0, 256, (96, 96, 3), dtype=np.uint8) for c in CAMERAS}
    obs["observation.state"] = rng.normal(size=14).astype(np.float32)
    return obs


def start_server(folder: Path) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "actlab.deploy.server", f"checkpoint={folder}", "serve.port=0"],
        cwd=folder.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for line in process.stdout:
        if "Serving" in line:
            return process, int(line.rsplit(":", 1)[1])
    raise RuntimeError("actlab-serve did not start")


def round_trip(folder: Path, policy) -> list[list[str]]:
    """p50 ms of in-process predict_action_chunk and of the server's round trip, interleaved in rounds."""
    from actlab.deploy.client import PolicyClient
    from actlab.features import to_policy_batch

    obs = robot_observation()
    process, port = start_server(folder)
    local, remote, server_infer = [], [], []
    try:
        with PolicyClient(f"ws://127.0.0.1:{port}") as client:
            for _ in range(5):
                client.infer(obs)
                policy.predict_action_chunk(to_policy_batch(obs, policy.config.input_features))
            for _ in range(ROUNDS):
                for _ in range(CALLS):
                    started = time.perf_counter()
                    policy.predict_action_chunk(to_policy_batch(obs, policy.config.input_features))
                    local.append(time.perf_counter() - started)
                for _ in range(CALLS):
                    started = time.perf_counter()
                    reply = client.infer(obs)
                    remote.append(time.perf_counter() - started)
                    server_infer.append(reply["server_timing"]["infer_ms"] / 1000)
    finally:
        process.terminate()
        process.wait(60)
    ms = lambda values: 1000 * statistics.median(values)  # noqa: E731
    transport = [r - i for r, i in zip(remote, server_infer, strict=True)]
    return [
        ["in-process predict_action_chunk (with input conversion)", f"{ms(local):.1f}"],
        ["round trip through actlab-serve", f"{ms(remote):.1f}"],
        ["... of which the server's inference", f"{ms(server_infer):.1f}"],
        ["overhead (round trip - in-process)", f"{ms(remote) - ms(local):.2f}"],
        # per request, so that a server process slower or faster than this one does not count
        ["overhead (round trip - the server's inference)", f"{ms(transport):.2f}"],
    ]


class StillRobot:
    """Answers at once with the same observation; sends go nowhere."""

    def __init__(self):
        self.observation = robot_observation()

    def reset(self) -> None:
        pass

    def get_observation(self):
        return self.observation

    def send_action(self, action) -> None:
        pass

    def close(self) -> None:
        pass


def loop_jitter(policy, threshold: float, seconds: float = 10.0) -> dict[str, float]:
    from actlab.deploy.loop import ControlLoop
    from actlab.deploy.policies import LocalPolicy

    options = dict(frequency=50.0, refill_threshold=threshold, merge="latest", ensemble_coeff=0.01, clip=True,
                   clip_margin=0.05, max_latency=0.5, on_timeout="hold", dry_run=False, device="cpu")  # fmt: skip
    loop = ControlLoop(LocalPolicy(policy), OmegaConf.create(options), policy.config.action_range)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)  # as actlab-deploy does
    try:
        loop.run_episode(StillRobot(), max_steps=int(50 * seconds))
    finally:
        sys.setswitchinterval(switch)
        loop.close()
    return loop.stats.summary()


def main() -> None:
    policy = baseline_policy()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "baseline"
        policy.save_pretrained(folder)
        rows = round_trip(folder, policy)
    table("serve: model=baseline, 2 cameras 96x96 + 14-D state, batch 1 (p50, ms)", ["", "ms"], rows)
    rows = []
    # select_action first: the background run gives the process a second OpenMP team (see ControlLoop)
    for name, threshold in (("select_action (threshold 0)", 0.0), ("background refill at half the chunk", 0.5)):
        s = loop_jitter(policy, threshold)
        rows.append([
            name, f"{s['achieved_hz']:.2f}", f"{s['jitter_p50_ms']:.2f}", f"{s['jitter_p99_ms']:.2f}",
            str(s["missed_deadlines"]), f"{s['inference_p50_ms']:.1f}", str(s["underruns"]),
        ])  # fmt: skip
    table(
        "control loop at 50 Hz, 500 ticks, the same policy (n_action_steps=100) in this process",
        ["chunk execution", "Hz", "jitter p50", "jitter p99", "missed", "inference p50", "underruns"],
        rows,
    )
