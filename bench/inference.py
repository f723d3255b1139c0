"""Latency of `predict_action_chunk` for `model=baseline` (chunk 100, 14-D state/action): actlab vs LeRobot.

Both policies have the same architecture and the same (random) weights: actlab's `model.*` tensors are
copied into LeRobot's ACTPolicy, so in fp32 they compute the same chunk. Cases: 2 cameras at 96x96 and
4 cameras at 480x640, batch 1, fp32 and bf16 (autocast of matmuls and convolutions). LeRobot is timed on
already-normalised inputs (its normalisation is a separate processor); actlab's call includes its own
normalisation. Printed: p50 latency, the ratio to LeRobot fp32, and the largest bf16-vs-fp32 action
difference in normalised units (action std = 1). Then bench.runtimes: p50/p99 per chunk of LeRobot,
actlab's PyTorch runtime and ONNX Runtime for model=tiny state-only, quickstart_image and model=baseline.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import torch

from bench.common import table

CASES = [("2 cams 96x96", 2, (96, 96), 45), ("4 cams 480x640", 4, (480, 640), 9)]
STATE_DIM = ACTION_DIM = 14


def baseline_policies(n_cameras: int, hw: tuple[int, int]):
    """actlab's ACTPolicy (model=baseline architecture) and LeRobot's with the same weights."""
    from actlab.export.lerobot import to_lerobot
    from actlab.policy import ACTPolicy, ACTPolicyConfig, PolicyFeature

    cameras = [f"observation.images.cam{i}" for i in range(n_cameras)]
    inputs = {"observation.state": PolicyFeature("STATE", (STATE_DIM,))}
    inputs.update({c: PolicyFeature("VISUAL", (3, *hw)) for c in cameras})
    outputs = {"action": PolicyFeature("ACTION", (ACTION_DIM,))}
    rng = np.random.default_rng(0)
    stats = {
        k: {
            "mean": rng.uniform(0.3, 0.6, (3, 1, 1) if k in cameras else f.shape),
            "std": np.full((3, 1, 1) if k in cameras else f.shape, 0.25),
        }
        for k, f in {**inputs, **outputs}.items()
    }
    torch.manual_seed(0)
    ours = ACTPolicy(
        ACTPolicyConfig(
            input_features=inputs, output_features=outputs, encoder={"name": "resnet18", "pretrained": None}
        ),
        stats,
    ).eval()
    theirs, _, _ = to_lerobot(ours)
    return ours, theirs, cameras


def p50_ms(fns: dict[str, object], repeats: int, rounds: int = 3) -> dict[str, float]:
    """Median milliseconds of each callable over `rounds` rounds; in each round every callable runs
    `repeats // rounds` times in a row after a warm-up call (as a deployed policy runs: caches warm),
    so slow drifts of the machine hit all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            fn()
            for _ in range(max(1, repeats // rounds)):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: 1000 * float(np.median(t)) for name, t in times.items()}


def bf16() -> contextlib.AbstractContextManager:
    return torch.autocast("cpu", dtype=torch.bfloat16)


def measure(name: str, n_cameras: int, hw: tuple[int, int], repeats: int) -> list[list[str]]:
    ours, theirs, cameras = baseline_policies(n_cameras, hw)
    g = torch.Generator().manual_seed(1)
    obs = {"observation.state": torch.randn(1, STATE_DIM, generator=g)}
    obs.update({c: torch.rand(1, 3, *hw, generator=g) for c in cameras})
    normalised = {k: ours.normalizer.normalize(k, v) for k, v in obs.items()}

    def lerobot(amp: bool):
        with bf16() if amp else contextlib.nullcontext():
            return theirs.predict_action_chunk(dict(normalised))

    def actlab(precision: str):
        return ours.configure_inference(precision).predict_action_chunk(obs)

    std = ours.normalizer.stats["action"].std
    fp32_ours = actlab("fp32")
    parity = float(((fp32_ours - ours.normalizer.unnormalize("action", lerobot(False).float())) / std).abs().max())
    bf16_err = float(((actlab("bf16") - fp32_ours) / std).abs().max())
    ms = p50_ms(
        {
            "lerobot_fp32": lambda: lerobot(False),
            "lerobot_bf16": lambda: lerobot(True),
            "actlab_fp32": lambda: actlab("fp32"),
            "actlab_bf16": lambda: actlab("bf16"),
        },
        repeats,
    )
    base = ms["lerobot_fp32"]
    return [
        [
            name,
            precision,
            f"{ms[f'lerobot_{precision}']:.1f}",
            f"{ms[f'actlab_{precision}']:.1f}",
            f"{ms[f'actlab_{precision}'] / base:.2f}",
            f"{diff:.1e}",
        ]
        for precision, diff in (("fp32", parity), ("bf16", bf16_err))
    ]


def main() -> None:
    rows = [row for case in CASES for row in measure(*case)]
    table(
        f"predict_action_chunk, model=baseline, batch 1, p50 ms ({torch.get_num_threads()} threads)",
        ["case", "precision", "LeRobot", "actlab", "actlab / LeRobot fp32", "max |action diff| vs fp32"],
        rows,
    )
    print("(diff column: fp32 rows compare actlab with LeRobot, bf16 rows actlab bf16 with actlab fp32)")
    from bench import runtimes

    runtimes.main()  # per chunk p50/p99 with ONNX Runtime beside LeRobot and actlab's PyTorch runtime


if __name__ == "__main__":
    main()
