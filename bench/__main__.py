"""`python -m bench [--emulate-avx2] [name ...]`: run the benchmarks and print their tables, each followed by
the CPU, its flags and whether its kernels are held to AVX2. With no name, the performance benchmarks run;
`kill_resume` (crash safety, `make bench-kill`) and `quickstart_image` (a timed image quickstart from empty
data, 13 minutes held to AVX2 on 2 cores) run when named.

`--emulate-avx2` runs them in a process whose PyTorch kernels are held to AVX2 (ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2): a CPU with AVX-512 (and native bf16) then runs
them as an AVX2-only CPU would. A bf16 probe printed first shows that it took: bf16 autocast several
times slower than fp32, as on a real AVX2 CPU. It gets its own torch.compile cache: PyTorch's does not key
its compiled kernels on these variables, and a cache filled without them gave NaN actions under them."""

import argparse
import importlib
import os
import subprocess
import sys

BENCHMARKS = [
    "roofline",
    "train_step",
    "cpu_kernels",
    "loader",
    "inference",
    "eval",
    "collect",
    "serve",
    "aloha_step",
    "startup",
]
OTHERS = ["kill_resume", "quickstart_image"]


def avx2_environment(environ: dict[str, str]) -> dict[str, str]:
    """`environ` with PyTorch's kernels held to AVX2 and a torch.compile cache of their own."""
    from actlab.devices import AVX2_EMULATION, avx2_compile_cache

    return {**environ, **AVX2_EMULATION, "TORCHINDUCTOR_CACHE_DIR": avx2_compile_cache(environ)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=BENCHMARKS, choices=BENCHMARKS + OTHERS)
    parser.add_argument("--emulate-avx2", action="store_true", help="hold PyTorch's CPU kernels to AVX2")
    args = parser.parse_args()
    if args.emulate_avx2:
        sys.exit(subprocess.call([sys.executable, "-m", "bench", *args.names], env=avx2_environment(os.environ)))
    from bench.common import bf16_probe, machine

    print(machine())
    print(bf16_probe())
    for name in args.names:
        importlib.import_module(f"bench.{name}").main()
