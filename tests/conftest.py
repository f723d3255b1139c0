"""Shared fixtures: tiny LeRobot datasets written with LeRobot's own writer, and the real Hydra configs
composed with small overrides."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Under pytest-xdist (`make test`, `make test-fast`) the workers share the cores: each worker, and the
# commands it starts, gets its share of threads instead of every PyTorch thread pool spinning on all of them.
# Set before the first import of torch, which reads it once.
# CORES_PER_WORKER is that share, for tests that start commands side by side.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    CORES_PER_WORKER = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(CORES_PER_WORKER))
else:
    CORES_PER_WORKER = os.cpu_count() or 1

from actlab.devices import avx2_compile_cache, kernels_limited_to_avx2

# Under `ATEN_CPU_CAPABILITY=avx2 ...` (an AVX2-only CPU emulated) compiled kernels get a cache of their own,
# as under `python -m bench --emulate-avx2`.
if kernels_limited_to_avx2() and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = avx2_compile_cache(os.environ)

import numpy as np
import pytest
from omegaconf import DictConfig

from actlab.config.compose import compose_train as compose
from actlab.data.synthetic import random_frame
from actlab.features import PolicyFeature
from actlab.lerobot_io.writer import lerobot_writer
from tests.alone import machine_share

os.environ.setdefault("SVT_LOG", "1")  # quiet AV1 encoder banners

REPO = Path(__file__).resolve().parents[1]

# Small settings that keep a training step fast on 2 CPU cores.
FAST = [
    "trainer.log_every_n_steps=1",
    "trainer.val_check_interval=2",
    "trainer.limit_val_batches=2",
    "trainer.enable_progress_bar=false",
    "logger=csv",
]


def compose_train(overrides: list[str], tmp_path: Path) -> DictConfig:
    """conf/train.yaml composed as Hydra would, with outputs and data under `tmp_path`."""
    return compose(overrides, output_dir=tmp_path / "run", data_dir=tmp_path / "data")


def trained_checkpoint(tmp: Path, experiment: str = "quickstart", *overrides: str) -> Path:
    """The final checkpoint of `experiment` trained for 2 steps on 2 collected demonstrations, without
    evaluations: a small real run for the tests that evaluate, serve, export or deploy one."""
    from actlab.training.train import train

    cfg = compose_train(
        [f"experiment={experiment}", "dataset.collect.episodes=2", "trainer.max_steps=2", "checkpoint.save_freq=2",
         "env.eval_freq=0", "env.final_eval_episodes=0", "optimized_metric=null", "dataset.batch_size=8", *FAST,
         *overrides],
        tmp,
    )  # fmt: skip
    train(cfg)
    return Path(cfg.paths.output_dir) / "checkpoints" / "final"


def write_lerobot_dataset(
    root: Path,
    episodes: int = 3,
    frames: int = 12,
    cameras: tuple[str, ...] = (),
    video: bool = True,
    image_hw: tuple[int, int] = (32, 32),
    state_dim: int = 6,
    env_state_dim: int | None = 4,
    action_dim: int = 5,
    seed: int = 0,
    lengths: list[int] | None = None,
    fps: int = 10,
) -> Path:
    """A LeRobot v3.0 dataset of random frames, written with LeRobot's own writer."""
    rng = np.random.default_rng(seed)
    features = {
        "observation.state": PolicyFeature("STATE", (state_dim,)),
        "action": PolicyFeature("ACTION", (action_dim,)),
    }
    if env_state_dim:
        features["observation.environment_state"] = PolicyFeature("ENV", (env_state_dim,))
    for cam in cameras:
        features[f"observation.images.{cam}"] = PolicyFeature("VISUAL", (3, *image_hw))

    with lerobot_writer(root, features, fps, video, repo_id=f"test/{root.name}") as write_episode:
        for ep in range(episodes):
            write_episode([random_frame(features, rng) for _ in range(lengths[ep] if lengths else frames)], "test")
    return root


G1_CAMERAS = ("cam_left_high", "cam_right_high", "cam_left_wrist", "cam_right_wrist")


def write_g1_like_dataset(root: Path, frames: int = 6) -> Path:
    """The Unitree G1 layout at a tiny size: four cameras, 28-D state and action, 30 fps."""
    return write_lerobot_dataset(
        root,
        episodes=2,
        frames=frames,
        cameras=G1_CAMERAS,
        image_hw=(24, 32),
        state_dim=28,
        action_dim=28,
        env_state_dim=None,
        fps=30,
    )


@pytest.fixture(scope="session")
def state_dataset(tmp_path_factory) -> Path:
    return write_lerobot_dataset(tmp_path_factory.mktemp("data") / "state", episodes=4, frames=15)


@pytest.fixture(scope="session")
def video_dataset(tmp_path_factory) -> Path:
    return write_lerobot_dataset(tmp_path_factory.mktemp("data") / "video", cameras=("front", "wrist"), video=True)


@pytest.fixture(scope="session")
def png_dataset(tmp_path_factory) -> Path:
    return write_lerobot_dataset(tmp_path_factory.mktemp("data") / "png", cameras=("front",), video=False)


def run_cli(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python train.py ARGS` in `cwd`, as a user runs it."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "ACTLAB_DATA_DIR": str(cwd / "data")}
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# `make test` runs a test file per core (pytest-xdist, `--dist loadfile --no-loadscope-reorder`), files in
# this order: the longest first, so that no core ends the run alone on a long one (a few slow tests can
# outlast a file of many quick ones; xdist's own reordering goes by the number of tests). Measured on 2
# cores; a file not listed starts after these, in the usual order. Order only: every test stands alone.
LONGEST_FIRST = [
    "test_scale.py",
    "test_sim.py",
    "test_crash_safety.py",
    "test_bad_input.py",
    "test_train.py",
    "test_aloha.py",
    "test_eval.py",
    "test_lerobot_robot.py",
    "test_onnx_runtime.py",
    "test_onnx.py",
    "test_lerobot_policy.py",
    "test_deploy_watchdog.py",
    "test_resume_run.py",
    "test_sigterm.py",
    "test_recipes.py",
    "test_requeue.py",
    "test_speed.py",
]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """A test marked `alone` runs with no other worker's test beside it (tests/alone.py)."""
    # An xdist worker's --basetemp is <the run's temporary folder>/popen-gwN: the parent is the run's own.
    shared = Path(item.config.option.basetemp).parent if os.environ.get("PYTEST_XDIST_WORKER") else None
    with machine_share(shared, exclusive=item.get_closest_marker("alone") is not None):
        yield


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's own order is kept


@pytest.fixture(autouse=True)
def process_state_is_restored(request):
    """What a test changes in this process and its children would inherit (environment variables, ignored or
    blocked signals, the working directory) is put back after it, and reported: under pytest-xdist a
    worker runs many test files in turn, so a leak would reach commands started by unrelated tests."""
    import signal

    env, cwd = dict(os.environ), os.getcwd()
    signals = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    yield
    changed = sorted(k for k in {*env, *os.environ} - {"PYTEST_CURRENT_TEST"} if env.get(k) != os.environ.get(k))
    changed += [f"signal {s.name}" for s, handler in signals.items() if signal.getsignal(s) != handler]
    changed += ["blocked signals"] if signal.pthread_sigmask(signal.SIG_BLOCK, []) != mask else []
    changed += ["working directory"] if os.getcwd() != cwd else []
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    for s, handler in signals.items():
        if handler is not None:
            signal.signal(s, handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    if changed and os.environ.get("ACTLAB_TEST_LEAKS"):
        with open(os.environ["ACTLAB_TEST_LEAKS"], "a") as f:
            f.write(f"{request.node.nodeid}: {', '.join(changed)}\n")
