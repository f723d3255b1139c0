"""Helpers shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def write_image_dataset(
    root: Path, cameras=("left", "right"), hw=(96, 96), episodes=4, frames=60, state_dim=14, action_dim=14, video=True
) -> Path:
    """A LeRobot v3.0 dataset of random frames, written with LeRobot's own writer (once)."""
    if (root / "meta" / "info.json").is_file():
        return root
    from actlab.features import PolicyFeature
    from actlab.lerobot_io.writer import lerobot_writer

    rng = np.random.default_rng(0)
    features = {
        "observation.state": PolicyFeature("STATE", (state_dim,)),
        "action": PolicyFeature("ACTION", (action_dim,)),
    }
    features.update({f"observation.images.{c}": PolicyFeature("VISUAL", (3, *hw)) for c in cameras})

    def frame() -> dict[str, np.ndarray]:
        return {
            "observation.state": rng.normal(size=state_dim).astype(np.float32),
            "action": rng.normal(size=action_dim).astype(np.float32),
            **{f"observation.images.{c}": rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for c in cameras},
        }

    with lerobot_writer(root, features, fps=30, video=video, repo_id=f"bench/{root.name}") as write_episode:
        for _ in range(episodes):
            write_episode([frame() for _ in range(frames)], "bench")
    return root


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


FLAGS = ("avx512_bf16", "amx_bf16", "avx512f", "avx2")


def cpu_flags() -> str:
    """The flags of `grep -o 'avx512_bf16\\|amx_bf16\\|avx512f\\|avx2' /proc/cpuinfo | sort -u`, from the
    flags actlab.devices reads."""
    from actlab.devices import cpu_flags as all_flags

    found = sorted(flag for flag in FLAGS if flag in all_flags())
    return " ".join(found) or "none of " + ", ".join(FLAGS)


def machine() -> str:
    """The line under every table: the CPU, its flags, and whether its kernels are held to AVX2."""
    from actlab.devices import describe_cpu, emulation

    held = emulation()
    return f"CPU: {describe_cpu()}; flags: {cpu_flags()}; " + (
        f"emulating an AVX2-only CPU: {held}" if held else "no emulation"
    )


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    print(machine())


def bf16_probe() -> str:
    """How this process's kernels run bf16: one ResNet-18 training step (8 images 96x96) under bf16
    autocast against fp32. Native bf16 is faster than fp32; emulated bf16 (an AVX2-only CPU, or one whose
    kernels are held to AVX2) is several times slower. A few seconds with native bf16, about 20 without."""
    import torch
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    x = torch.randn(8, 3, 96, 96)

    def step(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            net(x).float().square().mean().backward()

    fp32 = median_seconds(lambda: step(False), 3, warmup=1)
    bf16 = median_seconds(lambda: step(True), 3, warmup=1)
    probe = "bf16 autocast probe (ResNet-18 step, 8 x 96x96)"
    return f"{probe}: fp32 {fp32:.3f} s, bf16 {bf16:.3f} s ({bf16 / fp32:.1f}x fp32)"
