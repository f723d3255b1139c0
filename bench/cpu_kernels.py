"""What the fp32 CPU training kernels of ResNet trunks buy (actlab.policy.encoders.cpu_training), side by
side in one process: a training step (forward, backward, gradient clipping, fused AdamW) of the
quickstart_image policy (2 cameras 64x64, group norm, batch 32; its stride-16 `layer3` trunk and the
full `layer4` trunk it had before) and of `model=baseline` (2 cameras 96x96, frozen batch norm, batch 8),
with channels-last activations and the small-map weight gradient each switched off and on. Every case and
variant takes its turn in every round, so a machine whose speed drifts affects them alike; each figure is
the median over its rounds.

    python -m bench cpu_kernels          # about 6 minutes on 2 AVX2 cores
"""

from __future__ import annotations

import os
import statistics
import time

import torch
from torch import nn

from bench.common import table

ROUNDS, STEPS = 4, 4
# name -> (policy_for's case, overrides, image size, batch size)
CASES = {
    "quickstart_image": ("quickstart_image", (), (64, 64), 32),
    "quickstart_image, layer4 trunk": ("quickstart_image", ("encoder.feature_layer=layer4",), (64, 64), 32),
    "baseline": ("baseline", (), (96, 96), 8),
}
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


def rounds() -> int:
    return 1 if os.environ.get("BENCH_QUICK") == "1" else ROUNDS


def setup(name: str):
    """The case's training policy, its AdamW and one random batch."""
    from bench.runtimes import policy_for

    case, overrides, hw, batch_size = CASES[name]
    policy = policy_for(case, hw, overrides).train()
    chunk, action_dim = policy.config.chunk_size, policy.config.action_feature.shape[0]
    batch = {
        k: torch.randn(batch_size, *f.shape) for k, f in policy.config.input_features.items() if f.type != "VISUAL"
    }
    batch.update({k: torch.randint(0, 256, (batch_size, *f.shape), dtype=torch.uint8)
                  for k, f in policy.config.image_features.items()})  # fmt: skip
    batch["action"] = torch.randn(batch_size, chunk, action_dim)
    batch["action_is_pad"] = torch.zeros(batch_size, chunk, dtype=torch.bool)
    return policy, torch.optim.AdamW(policy.parameters(), lr=1e-5, fused=True), batch


def measure() -> dict[str, list[float]]:
    """Median s/step per case and variant, every (case, variant) taking its turn in every round."""
    cases = {name: setup(name) for name in CASES}
    times = {(name, v): [] for name in CASES for v in range(len(VARIANTS))}
    for _ in range(rounds()):
        for name, variant in times:
            policy, optimizer, batch = cases[name]
            set_variant(policy, variant)
            training_step(policy, optimizer, batch)  # warm-up: oneDNN primitives of this layout
            started = time.perf_counter()
            for _ in range(STEPS):
                training_step(policy, optimizer, batch)
            times[name, variant].append((time.perf_counter() - started) / STEPS)
            set_variant(policy, 3)
    return {name: [statistics.median(times[name, v]) for v in range(len(VARIANTS))] for name in CASES}


def main() -> None:
    results = measure()
    rows = []
    for i, name in enumerate(VARIANTS):
        row = [name]
        for seconds in results.values():
            row += [f"{seconds[i]:.3f}", f"{seconds[0] / seconds[i]:.2f}x"]
        rows.append(row)
    header = [""]
    for name, (_, _, hw, batch_size) in CASES.items():
        header += [f"{name} ({hw[0]}x{hw[1]}, batch {batch_size}) s/step", "speed-up"]
    table(f"fp32 training step on the CPU, median of {rounds()} rounds of {STEPS} steps", header, rows)


if __name__ == "__main__":
    main()
