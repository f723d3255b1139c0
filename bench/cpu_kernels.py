"""What the fp32 CPU training kernels of ResNet trunks buy (actlab.policy.encoders.cpu_training), side by
side in one process: a training step (forward, backward, gradient clipping, fused AdamW) of the
quickstart_image policy (2 cameras 64x64, group norm, batch 32) and of `model=baseline` (2 cameras 96x96,
frozen batch norm, batch 8), with channels-last activations and the small-map weight gradient each
switched off and on. The variants take turns, round after round, so a machine whose speed drifts
affects them alike; each figure is the median over its rounds.

    python -m bench cpu_kernels          # about 4 minutes on 2 AVX2 cores
"""

from __future__ import annotations

import os
import statistics
import time

import torch
from torch import nn

from bench.common import table

ROUNDS, STEPS = 4, 4
CASES = {"quickstart_image": ((64, 64), 32), "baseline": ((96, 96), 8)}
VARIANTS = [
    "neither (torchvision's convolutions, NCHW)",
    "channels-last only",
    "small-map gradient only",
    "both (actlab)",
]


def training_step(policy, optimizer, batch) -> None:
    losses = policy(batch)
    losses["loss"].backward()
    torch.nn.utils.clip_grad_norm_([p for p in policy.parameters() if p.grad is not None], 10.0, foreach=True)
    optimizer.step()
    optimizer.zero_grad()


def set_variant(policy, variant: int) -> None:
    """Switches the two kernels of `policy`'s trunk: bit 0 channels-last, bit 1 the small-map gradient."""
    import actlab.policy.encoders.resnet as resnet
    from actlab.policy.encoders.cpu_training import CpuTrainConv2d, fp32_cpu_training

    resnet.fp32_cpu_training = fp32_cpu_training if variant & 1 else (lambda x: False)
    for m in policy.model.backbone.modules():
        if isinstance(m, nn.Conv2d):
            m.__class__ = CpuTrainConv2d if variant & 2 else nn.Conv2d


def measure(case: str) -> list[float]:
    from bench.runtimes import policy_for

    hw, batch_size = CASES[case]
    policy = policy_for(case, hw).train()
    chunk, action_dim = policy.config.chunk_size, policy.config.action_feature.shape[0]
    batch = {
        k: torch.randn(batch_size, *f.shape) for k, f in policy.config.input_features.items() if f.type != "VISUAL"
    }
    batch.update({k: torch.randint(0, 256, (batch_size, *f.shape), dtype=torch.uint8)
                  for k, f in policy.config.image_features.items()})  # fmt: skip
    batch["action"] = torch.randn(batch_size, chunk, action_dim)
    batch["action_is_pad"] = torch.zeros(batch_size, chunk, dtype=torch.bool)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-5, fused=True)
    times: dict[int, list[float]] = {v: [] for v in range(len(VARIANTS))}
    rounds = 1 if os.environ.get("BENCH_QUICK") == "1" else ROUNDS
    try:
        for _ in range(rounds):
            for variant in times:
                set_variant(policy, variant)
                training_step(policy, optimizer, batch)  # warm-up: oneDNN primitives of this layout
                started = time.perf_counter()
                for _ in range(STEPS):
                    training_step(policy, optimizer, batch)
                times[variant].append((time.perf_counter() - started) / STEPS)
    finally:
        set_variant(policy, 3)
    return [statistics.median(t) for t in times.values()]


def main() -> None:
    results = {case: measure(case) for case in CASES}
    rows = []
    for i, name in enumerate(VARIANTS):
        row = [name]
        for seconds in results.values():
            row += [f"{seconds[i]:.3f}", f"{seconds[0] / seconds[i]:.2f}x"]
        rows.append(row)
    header = [""]
    for case, (hw, batch_size) in CASES.items():
        header += [f"{case} ({hw[0]}x{hw[1]}, batch {batch_size}) s/step", "speed-up"]
    table(f"fp32 training step on the CPU, median of {ROUNDS} rounds of {STEPS} steps", header, rows)


if __name__ == "__main__":
    main()
