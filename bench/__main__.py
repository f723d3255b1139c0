"""`python -m bench [name ...]`: run the benchmarks (all by default) and print their tables."""

import argparse
import importlib

BENCHMARKS = ["train_step", "loader", "inference"]

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", default=BENCHMARKS, choices=BENCHMARKS)
    for name in parser.parse_args().names:
        importlib.import_module(f"bench.{name}").main()
