"""How close a timing is to what the CPU can do: the floating-point work of a call (GFLOP, counted by
PyTorch's FlopCounterMode: matrix products, convolutions and attention, forward and backward) and the
CPU's fp32 FMA peak on the benchmark's threads (a small C kernel of independent FMA chains, compiled with
the system's C compiler at the widest vector width PyTorch's kernels may use here: 256 bits when they are
held to AVX2, 512 with AVX-512). A runtime that does the same arithmetic cannot beat `GFLOP / peak`, so
`time / floor` bounds the speed-up any runtime can reach over one measured at `time`.

    python -m bench roofline      # the peak, and the work and floor of the benchmarked calls
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from bench.common import table

# 12 independent FMA chains per thread (more than the 2 pipes x 4-cycle latency of current x86 cores keep
# busy), each in a variable of its own (kept in a register) and started from a different value (so the
# compiler cannot merge them).
CHAINS = [f"a{i}" for i in range(12)]
KERNEL = (
    r"""
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
int main(void) {
    const long iters = 20000000L;
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        float sink = 0;
        double start = now();
        #pragma omp parallel reduction(+:sink)
        {
            float t = (float)omp_get_thread_num();
            VEC b = SET1(0.999999f), c = SET1(1e-7f);
"""
    + "".join(f"            VEC {a} = SET1(1.0f + 0.1f * {i} + t);\n" for i, a in enumerate(CHAINS))
    + "            for (long n = 0; n < iters; n++) {\n"
    + "".join(f"                {a} = FMA({a}, b, c);\n" for a in CHAINS)
    + "            }\n"
    + "".join(f"            a0 = ADD(a0, {a});\n" for a in CHAINS[1:])
    + r"""
            float out[LANES];
            STORE(out, a0);
            sink += out[0];
        }
        double seconds = now() - start;
        double gflops = 2.0 * LANES * CHAINS * iters * omp_get_max_threads() / seconds / 1e9;
        if (gflops > best) best = gflops;
        if (sink == 42.0f) puts("");
    }
    printf("%.1f\n", best);
    return 0;
}
"""
)
WIDTHS = {
    256: ("-mavx2 -mfma", "__m256", "_mm256_set1_ps", "_mm256_fmadd_ps", "_mm256_add_ps", "_mm256_storeu_ps", 8),
    512: ("-mavx512f", "__m512", "_mm512_set1_ps", "_mm512_fmadd_ps", "_mm512_add_ps", "_mm512_storeu_ps", 16),
}


def vector_width() -> int:
    """The widest fp32 vectors PyTorch's kernels use here: 512 with AVX-512 unless held to AVX2, else 256."""
    from actlab.devices import cpu_flags, kernels_limited_to_avx2

    return 512 if "avx512f" in cpu_flags() and not kernels_limited_to_avx2() else 256


@functools.cache
def fma_peak(threads: int, width: int) -> float | None:
    """GFLOP/s of fp32 FMAs on `threads` threads at `width` bits, or None without a C compiler or x86."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None or torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        return None
    flags, vec, set1, fma, add, store, lanes = WIDTHS[width]
    macros = f"-DCHAINS={len(CHAINS)} -DVEC={vec} -DSET1={set1} -DFMA={fma} -DADD={add} -DSTORE={store} -DLANES={lanes}"
    with tempfile.TemporaryDirectory() as tmp:
        source, binary = Path(tmp) / "fma.c", Path(tmp) / "fma"
        source.write_text(KERNEL)
        built = subprocess.run(
            [compiler, "-O2", "-fopenmp", *flags.split(), *macros.split(), str(source), "-o", str(binary)],
            capture_output=True,
        )
        if built.returncode != 0:
            return None
        ran = subprocess.run(
            [str(binary)], env={**os.environ, "OMP_NUM_THREADS": str(threads)}, capture_output=True, text=True
        )
    return float(ran.stdout.split()[-1]) if ran.returncode == 0 else None


def peak() -> tuple[float | None, str]:
    """This process's fp32 FMA peak (its torch threads, the kernels' vector width) and a line that says so."""
    threads, width = torch.get_num_threads(), vector_width()
    gflops = fma_peak(threads, width)
    if gflops is None:
        return None, "fp32 FMA peak not measured (no C compiler or not x86)"
    return gflops, f"fp32 FMA peak {gflops:.0f} GFLOP/s ({threads} threads, {width}-bit FMA)"


def _linear_flop(x_shape, w_shape, *args, **kwargs) -> int:
    """x (..., K) @ w (N, K)^T: one multiply and one add per term."""
    return 2 * math.prod(x_shape) * w_shape[0]


@functools.cache
def _count_cpu_kernels() -> None:
    """FlopCounterMode has formulas for the GPU attention kernels; the CPU's fused one does the same work.
    It has none for oneDNN's linear, which actlab's fused feed-forward block calls in fp32 training."""
    from torch.utils import flop_counter

    for op, formula, raw in [
        (getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None), flop_counter.sdpa_flop, True),
        (
            getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None),
            flop_counter.sdpa_backward_flop,
            True,  # these two take shapes already
        ),
        (getattr(torch.ops.mkldnn, "_linear_pointwise", None), _linear_flop, False),
    ]:
        if op is not None and op not in flop_counter.flop_registry:
            flop_counter.register_flop_formula(op, get_raw=raw)(formula)


def gflop(fn: Callable[[], object]) -> float:
    """The floating-point work of one call of `fn`, in GFLOP."""
    from torch.utils.flop_counter import FlopCounterMode

    _count_cpu_kernels()
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def percent_of_peak(work_gflop: float, seconds: float, peak_gflops: float | None) -> str:
    return f"{100 * work_gflop / seconds / peak_gflops:.0f} %" if peak_gflops else "-"


def main() -> None:
    from bench.runtimes import REPEATS, chunk_work, inference_policy, observation_for

    gflops, line = peak()
    rows = []
    for case in REPEATS:
        policy = inference_policy(case)
        work = chunk_work(policy, observation_for(policy))
        floor = f"{1000 * work / gflops:.1f}" if gflops else "-"
        rows.append([f"inference, {case}, batch 1", f"{work:.2f}", floor])
    table(f"Work per call and the time it takes at the peak; {line}", ["call", "GFLOP", "ms at peak"], rows)
