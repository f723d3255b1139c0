"""`python -m bench [name ...]`: run the benchmarks and print their tables. With no name, the performance
benchmarks run; `kill_resume` (crash safety, `make bench-kill`) runs when named."""

import argparse
import importlib

BENCHMARKS = ["train_step", "loader", "inference", "eval", "collect", "serve", "aloha_step", "startup"]
OTHERS = ["kill_resume"]

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", default=BENCHMARKS, choices=BENCHMARKS + OTHERS)
    for name in parser.parse_args().names:
        importlib.import_module(f"bench.{name}").main()
