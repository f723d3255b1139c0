"""What the machine runs fast: native bf16 on this CPU, bf16 on the CUDA device, and a description of the
CPU for benchmark tables. bf16 autocast is only worth it with native support: measured on an AVX2-only
CPU, a `model=baseline` training step took 53.7 s in bf16 against 1.67 s in fp32 (32x slower), while on
a CPU with AVX-512 BF16 it was 1.5x faster than fp32."""

from __future__ import annotations

import functools
import getpass
import logging
import os
import platform
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch

log = logging.getLogger("actlab")

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# What limits PyTorch's CPU kernels to AVX2 on a CPU that has more (`python -m bench --emulate-avx2`): ATen's
# dispatch, oneDNN and MKL each read their own variable when they load.
AVX2_EMULATION = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def avx2_compile_cache(environ: Mapping[str, str]) -> str:
    """The torch.compile cache for kernels held to AVX2, beside inductor's default one (or
    TORCHINDUCTOR_CACHE_DIR's): PyTorch's cache does not key its kernels on AVX2_EMULATION's variables, and
    kernels cached without them gave NaN actions under them."""
    cache = environ.get("TORCHINDUCTOR_CACHE_DIR") or os.path.join(
        tempfile.gettempdir(), f"torchinductor_{getpass.getuser()}"
    )
    return f"{cache}-avx2"


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux's /proc/cpuinfo; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def kernels_limited_to_avx2() -> bool:
    """Whether this process's PyTorch kernels are held to AVX2 (or less) by ATEN_CPU_CAPABILITY or
    ONEDNN_MAX_CPU_ISA, whatever the CPU has: its bf16 is then emulated, as on an AVX2-only CPU."""
    aten = os.environ.get("ATEN_CPU_CAPABILITY", "").lower()
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    return aten in ("default", "avx2") or onednn in ("SSE41", "AVX") or onednn.startswith("AVX2")


def cpu_has_native_bf16() -> bool:
    return any(flag in cpu_flags() for flag in NATIVE_BF16_FLAGS) and not kernels_limited_to_avx2()


def emulation() -> str | None:
    """'AVX2 (ATEN_CPU_CAPABILITY=avx2 ...)' when the kernels are held to AVX2 by the environment, else None."""
    if not kernels_limited_to_avx2():
        return None
    settings = " ".join(f"{k}={os.environ[k]}" for k in AVX2_EMULATION if k in os.environ)
    return f"AVX2 ({settings})"


def describe_cpu() -> str:
    """e.g. 'AMD EPYC, 2 cores, AVX512 kernels, native bf16 (avx512_bf16)'."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    native = [flag for flag in NATIVE_BF16_FLAGS if flag in cpu_flags()]
    bf16 = f"native bf16 ({', '.join(native)})" if cpu_has_native_bf16() else "no native bf16"
    if native and not cpu_has_native_bf16():
        bf16 += f" (the CPU has {', '.join(native)}; the kernels are held to AVX2)"
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{name}, {torch.get_num_threads()} threads, {capability} kernels, {bf16}"


def bf16_is_native(device_type: str) -> bool:
    """Whether a `cuda` or `cpu` device runs bf16 natively (what the `auto` precisions choose by)."""
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device_type == "cpu" and cpu_has_native_bf16()


def check_bf16(setting: str, device_type: str) -> None:
    """An explicit bf16 `setting` on a CPU that emulates it warns (once)."""
    if device_type == "cpu" and not cpu_has_native_bf16():
        warn_emulated_bf16(setting)


@functools.cache
def warn_emulated_bf16(setting: str) -> None:
    """Once per setting: bf16 asked for on a CPU that emulates it."""
    log.warning(
        f"{setting} on a CPU without native bf16 instructions (no {' or '.join(NATIVE_BF16_FLAGS)}): bf16 is "
        "emulated there, measured 4-32x slower than fp32; leave the setting at auto to get fp32 here"
    )
