"""Latency per action chunk, batch 1, p50 and p99: LeRobot's ACT, actlab's PyTorch runtime (fp32) and ONNX
Runtime (CPU execution provider, fp32) running the graph `actlab-export format=onnx` writes, on the same
observations, for three policy shapes: `model=tiny` state-only (the state quickstart), the quickstart_image
policy (model=tiny, 2 cameras 64x64, ResNet-18 with group norm) and `model=baseline` with 2 cameras 480x640
(ResNet-18, frozen batch norm). Random weights: latency does not depend on them.

LeRobot is timed on normalised inputs (its normalisation is a separate processor); actlab's PyTorch call
includes normalisation and takes float images; ONNX Runtime takes the cameras' uint8 H x W x 3 bytes and
returns actions in action units (everything inside the graph). The CPU's flags are printed with the table,
and each row's share of the CPU's fp32 FMA peak (bench.roofline: the chunk's GFLOP over p50, over the peak).
Both runtimes get torch.get_num_threads() threads (OMP_NUM_THREADS sets it). `BENCH_QUICK=1` times a few
calls only (a check that the benchmark runs, not a measurement). On a machine shared with other loads, an
OpenMP team of 2+ threads collapses when one of them is descheduled (measured here: model=tiny 500 ms per
chunk with 2 threads, 6 ms with 1); use OMP_NUM_THREADS=1 there.

    python -m bench inference
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import cpu_flags, table
from bench.roofline import gflop, peak, percent_of_peak

REPEATS = {"tiny": 200, "quickstart_image": 100, "baseline": 20}
QUICK_REPEATS = 5


def policy_for(case: str, image_size: tuple[int, int] | None = None, overrides: tuple[str, ...] = ()):
    """A random-init ACTPolicy of the case's architecture (composed from conf/ as training would, with
    `overrides` on top), with the case's cameras at `image_size` when given."""
    from actlab.config.compose import compose_train
    from actlab.config.policy import ARCHITECTURE_KEYS
    from actlab.policy import ACTPolicy, ACTPolicyConfig, PolicyFeature

    case_overrides, state, env, cameras, hw = {
        "tiny": (["model=tiny"], 9, 7, 0, None),
        "quickstart_image": (["experiment=quickstart_image"], 9, 0, 2, (64, 64)),
        "baseline": (["model=baseline", "encoder.pretrained=null"], 14, 0, 2, (480, 640)),
    }[case]
    hw = image_size or hw
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_train([*case_overrides, *overrides], tmp)
    inputs = {"observation.state": PolicyFeature("STATE", (state,))}
    if env:
        inputs["observation.environment_state"] = PolicyFeature("ENV", (env,))
    inputs.update({f"observation.images.cam{i}": PolicyFeature("VISUAL", (3, *hw)) for i in range(cameras)})
    outputs = {"action": PolicyFeature("ACTION", (7 if case != "baseline" else 14,))}
    rng = np.random.default_rng(0)
    stats = {
        k: {"mean": rng.uniform(0.3, 0.6, (3, 1, 1) if f.type == "VISUAL" else f.shape), "std": np.full(
            (3, 1, 1) if f.type == "VISUAL" else f.shape, 0.25)}
        for k, f in {**inputs, **outputs}.items()
    }  # fmt: skip
    architecture = {k: cfg.model[k] for k in ARCHITECTURE_KEYS}
    encoder = {**cfg.encoder, "pretrained": None}
    torch.manual_seed(0)
    config = ACTPolicyConfig(input_features=inputs, output_features=outputs, encoder=encoder, **architecture)
    return ACTPolicy(config, stats).eval()


def percentiles(fn, repeats: int) -> tuple[float, float]:
    """p50 and p99 milliseconds of `fn` over `repeats` calls after two warm-up calls."""
    fn()
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - started))
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def observation_for(policy) -> dict[str, torch.Tensor]:
    """A random observation as actlab's PyTorch runtime takes it (float images in [0, 1])."""
    from actlab.export.onnx_check import random_observations, to_torch
    from actlab.policy.onnx_backend import graph_inputs

    feed = random_observations(policy, 1, 1, seed=3)[0]
    observation = to_torch(feed, graph_inputs(policy.config))
    return {k: v.float() / 255 if v.dtype == torch.uint8 else v for k, v in observation.items()}


def inference_policy(case: str):
    """The case's policy for inference only: no parameter requires a gradient (FlopCounterMode's module
    hooks fail on the gradient-free views of parameters that do)."""
    return policy_for(case).requires_grad_(False)


def chunk_work(policy, observation: dict[str, torch.Tensor]) -> float:
    """GFLOP of one action chunk of an `inference_policy` (the same arithmetic in every runtime)."""
    return gflop(lambda: policy.predict_action_chunk(observation))


def measure(case: str, repeats: int, peak_gflops: float | None) -> list[list[str]]:
    import onnxruntime as ort

    from actlab.export.onnx import write_onnx
    from actlab.export.onnx_check import random_observations
    from actlab.policy.onnx_backend import OUTPUT

    policy = inference_policy(case)
    feed = random_observations(policy, 1, 1, seed=3)[0]
    float_obs = observation_for(policy)
    work = chunk_work(policy, float_obs)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy.onnx"
        write_onnx(policy, path, case)
        size_mb = path.stat().st_size / 1e6
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the same cores as PyTorch
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    reference = policy.predict_action_chunk(float_obs).numpy()
    diff = float(np.abs(session.run([OUTPUT], feed)[0] - reference).max())
    timed = {
        "actlab PyTorch fp32": lambda: policy.predict_action_chunk(float_obs),
        "ONNX Runtime fp32": lambda: session.run([OUTPUT], feed),
    }
    try:
        from actlab.export.lerobot import to_lerobot

        lerobot, _, _ = to_lerobot(policy)
        normalised = {k: policy.normalizer.normalize(k, v) for k, v in float_obs.items()}
        timed = {"LeRobot fp32": lambda: lerobot.predict_action_chunk(dict(normalised)), **timed}
    except Exception as e:  # noqa: BLE001 - a shape LeRobot's ACT cannot hold (group norm): no LeRobot row
        print(f"{case}: no LeRobot row ({type(e).__name__}: {str(e).splitlines()[0][:100]})")
    rows = []
    results = {name: percentiles(fn, repeats) for name, fn in timed.items()}
    torch_p50 = results["actlab PyTorch fp32"][0]
    for name, (p50, p99) in results.items():
        note = f"max |diff| vs PyTorch {diff:.1e}, policy.onnx {size_mb:.1f} MB" if name.startswith("ONNX") else ""
        share = percent_of_peak(work, p50 / 1000, peak_gflops)
        rows.append([case, name, f"{p50:.2f}", f"{p99:.2f}", f"{torch_p50 / p50:.2f}", share, note])
    return rows


def main() -> None:
    quick = os.environ.get("BENCH_QUICK") == "1"
    peak_gflops, peak_line = peak()
    rows = []
    for case, repeats in REPEATS.items():
        rows += measure(case, QUICK_REPEATS if quick else repeats, peak_gflops)
    flags = cpu_flags()
    table(
        f"action chunk per call, batch 1, ms ({torch.get_num_threads()} threads each; CPU flags: {flags}; "
        + peak_line
        + ")"
        + (" -- BENCH_QUICK: a few calls, indicative only" if quick else ""),
        ["policy", "runtime", "p50", "p99", "PyTorch p50 / p50", "of peak", ""],
        rows,
    )


if __name__ == "__main__":
    main()
