"""Start-up: seconds from launching a command to its answer, each in a fresh process, for `--help`, a config
error (a misspelt key), a data error (train.py on a folder that is not a dataset) and `actlab-serve` on a
port already in use (with a tiny policy folder). Wall time depends on the machine's load and its file
cache; the CPU time (user + system) of the process much less, so both are printed. Each console script
runs as its entry point in pyproject.toml names it.

    python -m bench startup                                  # about a minute once start-up is light
    STARTUP_REPEATS=3 python -m bench startup                 # the best of 3 runs per row (default 2)
    STARTUP_COMPARE=/path/to/other/checkout python -m bench startup  # the same rows there, interleaved
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from bench.common import table

REPO = Path(__file__).resolve().parents[1]


def script(repo: Path, name: str) -> list[str]:
    """The console script `name` of the checkout `repo`, as its entry point in pyproject.toml names it."""
    if name == "train.py":
        return [sys.executable, str(repo / "train.py")]
    target = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["scripts"][name]
    module, function = target.split(":")
    code = f"import sys; sys.argv[0] = {name!r}; from {module} import {function}; sys.exit({function}())"
    return [sys.executable, "-c", code]


def commands(checkpoint: Path, busy_port: int, empty: Path) -> list[tuple[str, str, list[str]]]:
    """(command, case, arguments): every case ends before the command's task would start. `empty`: a folder
    that is not a dataset (no meta/info.json), for a data error."""
    rows = [("train.py", "--help", ["--help"]), ("train.py", "config error", ["trainer.max_step=3"])]
    rows.append(("train.py", "data error", ["model=tiny", "encoder.pretrained=null", f"dataset.root={empty}"]))
    misspelt = {"actlab-eval": "eval.videoz=1", "actlab-serve": "serve.prot=9000", "actlab-deploy": "control.hz=5"}
    for name, typo in misspelt.items():
        rows.append((name, "--help", ["--help"]))
        rows.append((name, "config error", [f"checkpoint={checkpoint}", typo]))
    rows.append(("actlab-serve", "port in use", [f"checkpoint={checkpoint}", f"serve.port={busy_port}"]))
    return rows


def tiny_policy(folder: Path) -> Path:
    """A state-only policy folder (config.json + model.safetensors) of a small architecture."""
    import torch

    from actlab.policy import ACTPolicy, ACTPolicyConfig, PolicyFeature

    torch.manual_seed(0)
    config = ACTPolicyConfig(
        input_features={"observation.state": PolicyFeature("STATE", (6,))},
        output_features={"action": PolicyFeature("ACTION", (6,))},
        dim_model=32,
        dim_feedforward=64,
        n_heads=2,
        n_encoder_layers=1,
        n_decoder_layers=1,
        use_vae=False,
        chunk_size=4,
        n_action_steps=4,
    )
    ACTPolicy(config).save_pretrained(folder)
    return folder


def run(argv: list[str], repo: Path, cwd: Path) -> tuple[float, float, int, str]:
    """Wall and CPU seconds to exit, exit status and the last line of stderr (the command's answer)."""
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    seconds = time.perf_counter() - started
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = cpu.ru_utime + cpu.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
    return seconds, cpu_seconds, done.returncode, (lines[-1] if lines else "")[:60]


def main() -> None:
    repeats = int(os.environ.get("STARTUP_REPEATS", "2"))
    repos = [REPO] + ([Path(os.environ["STARTUP_COMPARE"]).resolve()] if os.environ.get("STARTUP_COMPARE") else [])
    header = ["command", "case"]
    for repo in repos:
        header += [f"{repo.name} s", "cpu s", "exit"]
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        checkpoint = tiny_policy(Path(tmp) / "policy")
        (Path(tmp) / "not_a_dataset").mkdir()
        rows, answers = [], []
        for command, case, args in commands(checkpoint, busy.getsockname()[1], Path(tmp) / "not_a_dataset"):
            runs = {repo: [] for repo in repos}
            for _ in range(repeats):
                for repo in repos:  # interleaved: both checkouts see the same load
                    runs[repo].append(run([*script(repo, command), *args], repo, Path(tmp)))
            row = [command, case]
            for repo in repos:
                seconds, cpu, status, answer = min(runs[repo])
                row += [f"{seconds:.1f}", f"{cpu:.1f}", str(status)]
            rows.append(row)
            answers.append([command, case, min(runs[REPO])[3] if case != "--help" else ""])
    table(
        f"Start-up, seconds to the answer (best of {repeats} fresh processes; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)",
        header,
        rows,
    )
    table(f"The answers ({REPO.name}: the last line on stderr)", ["command", "case", "answer"], answers)


if __name__ == "__main__":
    main()
