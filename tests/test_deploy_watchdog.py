"""Nothing but finite, in-range actions reaches a robot, and the control loop keeps ticking whatever the
policy server does (issues 18 and 19): the one action check (actlab.features.check_action) in the loop,
the server and simulator rollouts; a policy that produces NaN mid-episode; a slow server and a server
restarted under a RemotePolicy, in this process; and real `actlab-serve` and `actlab-deploy` processes, the
server killed, stopped (SIGSTOP) and restarted while the robot is driven at 20 Hz."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from actlab.deploy.client import PolicyClient, UnsafeReply
from actlab.deploy.loop import ControlLoop, WatchdogStop
from actlab.deploy.policies import Disconnected, RemotePolicy
from actlab.deploy.safety import check_bounds, clip_bounds
from actlab.deploy.server import PolicySession
from actlab.errors import ActlabError
from actlab.features import check_action
from actlab.policy import ACTPolicy, ACTPolicyConfig, PolicyFeature
from actlab.sim.runner import LocalRunner, run_episodes
from tests.deploy_robot import read_events
from tests.test_deploy import SMALL, ScriptedRobot, ServerThread, control, observation, on_time, small_policy

REPO = Path(__file__).resolve().parents[1]
HZ = 20.0
MAX_LATENCY = 0.5


# ----------------------------------------------------------------------------------------- the check
def test_check_action_names_what_must_not_be_sent():
    bounds = (np.array([-1.0, 0.0]), np.array([1.0, 2.0]))
    assert check_action(np.array([0.5, 1.0], np.float32), 2, bounds) is None
    assert check_action(np.zeros((8, 2), np.float32), 2) is None  # a chunk
    assert check_action(np.array([np.nan, 0.0]), 2) == "holds NaN or Inf"
    assert check_action(np.array([np.inf, 0.0]), 2, bounds) == "holds NaN or Inf"
    assert check_action(np.zeros(3), 2) == "has shape [3]; expected 2 values per action"
    assert check_action(np.zeros((2, 2, 2)), 2).startswith("has shape [2, 2, 2]")
    assert check_action(np.array(["a", "b"]), 2).startswith("has dtype")
    assert check_action(np.array([0.0, 3.0]), 2, bounds) == "is outside the clipping range at [1] ([0, 2])"
    inverted = (np.array([1.0, 1.0]), np.array([-1.0, -1.0]))  # what control.clip_margin=-1 made of a range
    assert "outside the clipping range" in check_action(np.clip(np.zeros(2), *inverted), 2, inverted)
    assert "outside" in check_action(np.zeros(2), 2, (np.array([np.nan, 0.0]), np.array([1.0, 1.0])))


def test_a_clipping_range_that_could_pass_nothing_is_refused_at_start():
    with pytest.raises(ActlabError, match=r"action_range has 8 values for 7-D actions"):
        check_bounds(clip_bounds({"min": [0.0] * 8, "max": [1.0] * 8}, 0.05), 7, 0.05)
    with pytest.raises(ActlabError, match=r"clipping range is empty or not finite .*clip_margin=-1"):
        check_bounds(clip_bounds({"min": [0.0] * 7, "max": [1.0] * 7}, -1), 7, -1)
    with pytest.raises(ActlabError, match=r"not finite"):
        check_bounds(clip_bounds({"min": [np.nan] * 7, "max": [1.0] * 7}, 0.05), 7, 0.05)
    check_bounds(clip_bounds({"min": [0.0] * 7, "max": [1.0] * 7}, 0.05), 7, 0.05)


def nan_policy() -> ACTPolicy:
    policy = small_policy()
    with torch.no_grad():
        policy.model.action_head.bias[1] = float("nan")
    return policy


def test_the_server_answers_nan_actions_with_an_error_frame_and_keeps_the_connection():
    server = ServerThread(nan_policy())
    try:
        with PolicyClient(server.url) as client:
            with pytest.raises(UnsafeReply, match=r"unsafe actions: the policy's action chunk holds NaN or Inf"):
                client.infer(observation())
            client.reset()  # the same connection still answers
            with pytest.raises(UnsafeReply):
                client.infer(observation(1))
    finally:
        server.close()


class StillEnv:
    """A simulator stand-in: the same observation every step; records the actions it is given."""

    features = {"observation.state": PolicyFeature("STATE", (6,)), "action": PolicyFeature("ACTION", (5,))}
    fps = 10.0

    def __init__(self):
        self.actions: list[np.ndarray] = []

    def reset(self, seed: int) -> dict[str, np.ndarray]:
        return {"observation.state": np.zeros(6, np.float32)}

    def step(self, action: np.ndarray):
        self.actions.append(action)
        return self.reset(0), 0.0, False

    def close(self) -> None:
        pass


def state_policy(**overrides) -> ACTPolicy:
    torch.manual_seed(0)
    config = ACTPolicyConfig(
        input_features={"observation.state": PolicyFeature("STATE", (6,))},
        output_features={"action": PolicyFeature("ACTION", (5,))},
        encoder={"name": "resnet18", "pretrained": None},
        action_range={"min": [-1.0] * 5, "max": [1.0] * 5},
        fps=HZ,
        **{**SMALL, **overrides},
    )
    return ACTPolicy(config).eval()


def test_a_rollout_whose_policy_outputs_nan_fails_with_one_line_naming_episode_and_step():
    env, policy = StillEnv(), state_policy()
    with torch.no_grad():
        policy.model.action_head.bias[0] = float("inf")
    with pytest.raises(ActlabError, match=r"^episode 0 \(seed 7\), step 0: the policy's action holds NaN or Inf"):
        run_episodes(policy, [LocalRunner(env)], episodes=2, max_steps=5, seed=7, progress=False)
    assert env.actions == []  # the simulator never saw it


# ----------------------------------------------------------------------------------------- NaN mid-episode
class FlakyPolicy:
    """Chunks of 4 two-dimensional actions, chunk i all i; the calls in `bad` give NaN (or, with `width`,
    actions of another length)."""

    def __init__(self, bad: set[int], width: int = 2):
        self.bad, self.width, self.calls = bad, width, 0
        self.info = {"chunk_size": 4, "n_action_steps": 4, "temporal_ensemble_coeff": None,
                     "output_features": {"action": {"type": "ACTION", "shape": [2]}}}  # fmt: skip

    def reset(self) -> None:
        pass

    def observe(self, observation):
        return observation

    def chunk(self, observation) -> np.ndarray:
        self.calls += 1
        if self.calls in self.bad:
            return np.full((4, self.width), np.nan if self.width == 2 else 0.0, np.float32)
        return np.full((4, 2), float(self.calls), np.float32)

    def close(self) -> None:
        pass


@pytest.mark.alone  # the watchdog's bound is wall time
@pytest.mark.parametrize("threshold", [0.0, 0.5])
def test_nan_mid_episode_is_never_sent_the_watchdog_holds_and_the_statistics_count_it(threshold):
    robot, policy = ScriptedRobot(40), FlakyPolicy(bad={2, 3, 4})
    loop = ControlLoop(policy, control(frequency=20, refill_threshold=threshold, max_latency=0.25), None)
    loop.run_episode(robot, max_steps=40)
    loop.close()
    sent, stats = np.array(robot.sent), loop.stats.summary()
    assert np.isfinite(sent).all() and len(sent) + stats["skipped_ticks"] == 40, stats
    assert 8 <= stats["rejected_actions"] <= 12 and stats["watchdog_ticks"] >= 1
    assert stats["held_ticks"] == stats["rejected_actions"] + stats["underruns"]
    held = sent[(sent[:, 0] == 1.0)]
    assert len(held) >= 4 + 8  # chunk 1's four actions, then its last one held through the NaN chunks
    assert set(sent[:, 0]) >= {1.0, 5.0}  # and fresh actions again after them


@pytest.mark.alone
def test_nan_with_on_timeout_stop_stops_and_nan_at_the_first_tick_sends_nothing():
    robot = ScriptedRobot(40)
    loop = ControlLoop(FlakyPolicy(bad={2, 3, 4}), control(frequency=20, max_latency=0.25, on_timeout="stop"), None)
    with pytest.raises(WatchdogStop, match=r"no fresh action for 0\.\d+ s \(control.max_latency=0.25\)"):
        loop.run_episode(robot, max_steps=40)
    loop.close()
    assert np.isfinite(robot.sent).all() and 4 + 4 <= len(robot.sent) <= 4 + 6  # held until max_latency
    robot = ScriptedRobot(40)
    loop = ControlLoop(FlakyPolicy(bad={1, 2}), control(frequency=20, max_latency=1.25), None)
    loop.run_episode(robot, max_steps=12)
    loop.close()
    stats = loop.stats.summary()
    assert stats["unsent_ticks"] == 8 and stats["held_ticks"] == 0  # nothing safe to hold: nothing sent
    assert len(robot.sent) == 4 and np.isfinite(robot.sent).all()


def test_a_chunk_of_the_wrong_width_is_refused_whole():
    robot = ScriptedRobot(20)
    loop = ControlLoop(FlakyPolicy(bad={2}, width=3), control(frequency=50, refill_threshold=0.5), None)
    loop.run_episode(robot, max_steps=20)
    loop.close()
    assert loop.stats.rejected_chunks == 1 and all(a.shape == (2,) for a in robot.sent)


# ----------------------------------------------------------------------------------------- served, in process
@pytest.mark.alone
def test_a_slow_server_never_blocks_a_tick_and_the_watchdog_holds():
    policy = small_policy()
    predict = policy.predict_action_chunk

    def slow(batch):
        time.sleep(0.3)
        return predict(batch)

    policy.predict_action_chunk = slow

    def play():
        server = ServerThread(policy)
        remote = RemotePolicy(server.url, None, timeout=2.0)
        try:
            loop = ControlLoop(remote, control(frequency=HZ, max_latency=0.2), None)
            started = time.perf_counter()
            loop.run_episode(ScriptedRobot(100), max_steps=40)
            elapsed = time.perf_counter() - started
            loop.close()
        finally:
            remote.close()
            server.close()
        return elapsed, loop.stats.summary()

    def kept_its_rate(played):
        elapsed, stats = played
        return elapsed < 40 / HZ + 0.3 and stats["missed_deadlines"] <= 2

    elapsed, stats = on_time(play, kept_its_rate)
    assert kept_its_rate((elapsed, stats)), (elapsed, stats)  # the clock kept its rate
    assert stats["chunks"] >= 3 and stats["watchdog_ticks"] >= 3 and stats["held_ticks"] >= 10, stats
    assert stats["reconnects"] == 0 and stats["failed_requests"] == 0


@pytest.mark.parametrize("threshold", [0.0, 0.5])
def test_a_server_that_goes_away_mid_episode_is_held_through_in_both_modes(threshold):
    server = ServerThread(small_policy())
    remote = RemotePolicy(server.url, None, timeout=1.0)
    robot = ScriptedRobot(100)
    try:
        loop = ControlLoop(remote, control(frequency=HZ, refill_threshold=threshold, max_latency=0.3), None)
        threading.Timer(0.5, server.close).start()
        loop.run_episode(robot, max_steps=40)
        loop.close()
    finally:
        remote.close()
        server.close()
    stats, sent = loop.stats.summary(), np.array(robot.sent)
    assert stats["ticks"] + stats["skipped_ticks"] >= 40 and len(sent) >= 30 and np.isfinite(sent).all(), stats
    assert stats["failed_requests"] >= 1 and stats["watchdog_ticks"] >= 10 and stats["held_ticks"] >= 20, stats
    assert all(np.array_equal(a, sent[-1]) for a in sent[-stats["watchdog_ticks"] :])  # the last safe action


def test_a_restarted_server_is_reconnected_to_and_reset(monkeypatch):
    resets = []
    policy = small_policy()
    server = ServerThread(policy)
    port = server.server.bound_port
    remote = RemotePolicy(server.url, None, timeout=1.0, backoff=(0.05, 0.2))
    try:
        assert remote.chunk(observation()).shape == (8, 5)
        server.close()
        with pytest.raises(Disconnected):
            remote.chunk(observation())
        with pytest.raises(Disconnected):  # refused (or waiting for the next attempt)
            remote.chunk(observation())
        server = ServerThread(policy, port=port)
        monkeypatch.setattr(PolicySession, "reset", lambda self: resets.append(time.monotonic()))
        deadline = time.monotonic() + 10
        while True:
            try:
                chunk = remote.chunk(observation())
                break
            except Disconnected:
                assert time.monotonic() < deadline, "never reconnected"
                time.sleep(0.05)
        assert chunk.shape == (8, 5) and remote.reconnects == 1 and len(resets) == 1  # reset before the request
    finally:
        remote.close()
        server.close()


# ----------------------------------------------------------------------------------------- real processes
@pytest.fixture(scope="module")
def policy_folders(tmp_path_factory) -> dict[int, Path]:
    """The state policy saved with n_action_steps 4 and 1 (a request every tick)."""
    root = tmp_path_factory.mktemp("served")
    folders = {}
    for steps in (4, 1):
        folders[steps] = root / f"n_action_steps_{steps}"
        state_policy(n_action_steps=steps).save_pretrained(folders[steps])
    return folders


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A command in a process of its own, its output in files; on close continued (if stopped) and killed."""

    def __init__(self, args: list[str], out: Path, cwd: Path):
        # one OpenMP thread: with two on 2 busy cores, the tiny policy takes 190 ms a chunk instead of 2
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore",
               "OMP_NUM_THREADS": "1"}  # fmt: skip
        self.out, self.err = out, out.with_suffix(".err")
        with open(self.out, "w") as stdout, open(self.err, "w") as stderr:
            self.popen = subprocess.Popen(args, cwd=cwd, env=env, stdout=stdout, stderr=stderr)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.out.read_text():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} from {self.popen.args[2]}:\n{self.output()[-3000:]}")
            time.sleep(0.1)

    def output(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGCONT)
            self.popen.kill()
        self.popen.wait(30)


def serve(folder: Path, port: int, tmp: Path, name: str = "serve") -> Process:
    args = [sys.executable, "-m", "actlab.deploy.server", f"checkpoint={folder}", f"serve.port={port}",
            f"hydra.run.dir={tmp / name}"]  # fmt: skip
    server = Process(args, tmp / f"{name}.log", tmp)
    try:
        server.wait_for("Serving the policy", 240)
    except BaseException:
        server.close()
        raise
    return server


def warm_up(port: int, requests: int = 30) -> None:
    """A few requests, so that the first chunks the loop asks for are not the server's slowest."""
    with PolicyClient(f"ws://127.0.0.1:{port}") as client:
        for i in range(requests):
            client.infer({"observation.state": np.full(6, i / requests, np.float32)})


def deploy(port: int, tmp: Path, *overrides: str) -> Process:
    """actlab-deploy at 20 Hz on the server at `port`, driving a FileRobot (tests/deploy_robot.py) until
    `tmp/stop` exists (or 2400 ticks)."""
    args = [sys.executable, "-m", "actlab.deploy", f"policy.server=ws://127.0.0.1:{port}",
            "robot._target_=tests.deploy_robot.FileRobot", "~robot.env", f"+robot.events={tmp / 'events.txt'}",
            f"+robot.stop_file={tmp / 'stop'}", f"control.frequency={HZ:g}", f"control.max_latency={MAX_LATENCY}",
            "control.max_steps=2400", f"hydra.run.dir={tmp / 'deploy'}", *overrides]  # fmt: skip
    return Process(args, tmp / "deploy.log", REPO)


def sends(tmp: Path) -> list[tuple[float, np.ndarray]]:
    path = tmp / "events.txt"
    events = read_events(path) if path.exists() else []
    return [(t, np.array(a)) for t, kind, a in events if kind == "send"]


def fresh_sends(tmp: Path, after: float) -> list[float]:
    """When actions other than the one sent before them (fresh, not held) were sent after `after`."""
    out = sends(tmp)
    return [t for (t, a), (_, b) in zip(out[1:], out[:-1], strict=True) if t > after and not np.array_equal(a, b)]


def just_sent_fresh(tmp: Path) -> bool:
    """Whether the last tick, less than a tick ago, sent a fresh action."""
    out = sends(tmp)
    return len(out) > 1 and time.time() - out[-1][0] < 1 / HZ and not np.array_equal(out[-1][1], out[-2][1])


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def first_held_after(tmp: Path, when: float) -> float:
    """When the first action sent after `when` that repeats the one before it (a held tick) was sent."""
    out = sends(tmp)
    return next(t for (t, a), (_, b) in zip(out[1:], out[:-1], strict=True) if t > when and np.array_equal(a, b))


def last_tick(tmp: Path) -> float:
    return max(t for t, kind, _ in read_events(tmp / "events.txt") if kind == "tick")


def report(name: str, **seconds: float) -> None:
    print(f"\n{name}: " + ", ".join(f"{k} {1000 * v:.0f} ms" for k, v in seconds.items()))


def one_error_line(process: Process) -> str:
    lines = [line for line in process.err.read_text().splitlines() if line.strip()]
    assert len(lines) == 1, process.output()[-3000:]
    return lines[0]


@pytest.mark.alone  # bounds in wall time from the kill
@pytest.mark.slow
def test_a_killed_server_is_held_through_and_sigterm_still_writes_the_statistics(policy_folders, tmp_path):
    port, server, deployer = free_port(), None, None
    try:
        server = serve(policy_folders[4], port, tmp_path)
        warm_up(port)
        deployer = deploy(port, tmp_path, "control.on_timeout=hold")
        wait_until(lambda: len(fresh_sends(tmp_path, 0)) >= 20, 240, "20 fresh actions sent")
        killed_at = time.time()
        server.popen.kill()
        time.sleep(2.0)
        deployer.popen.send_signal(signal.SIGTERM)  # what systemd and Kubernetes send: as Ctrl-C
        assert deployer.popen.wait(60) == 130, deployer.output()[-3000:]
        held_at = first_held_after(tmp_path, killed_at)
        stats = json.loads((tmp_path / "deploy" / "deploy" / "stats.json").read_text())
        after = [(t, a) for t, a in sends(tmp_path) if t > held_at]
        ticks_after = [t for t, kind, _ in read_events(tmp_path / "events.txt") if kind == "tick" and t > killed_at]
    finally:
        for process in (deployer, server):
            if process is not None:
                process.close()
    report("SIGKILL, hold", first_held_tick=held_at - killed_at)
    assert "interrupted" in deployer.err.read_text() and "Traceback" not in deployer.output()
    assert len(ticks_after) >= 0.7 * 2.0 * HZ  # the loop kept its clock with the server gone
    assert all(np.array_equal(a, after[0][1]) for _, a in after) and np.isfinite(after[0][1]).all()  # held
    assert held_at - killed_at <= 4 / HZ + 2 / HZ + 0.25  # the planned actions left, then the next tick
    assert stats["watchdog_ticks"] >= (2.0 - 4 / HZ - MAX_LATENCY) * HZ * 0.7 and stats["held_ticks"] >= 20
    assert stats["failed_requests"] >= 1 and stats["rejected_actions"] == 0
    assert "lost the policy server" in deployer.output()


@pytest.mark.alone  # bounds in wall time from the kill
@pytest.mark.slow
def test_a_killed_server_with_on_timeout_stop_ends_the_run_with_one_line(policy_folders, tmp_path):
    port, server, deployer = free_port(), None, None
    try:
        server = serve(policy_folders[4], port, tmp_path)
        warm_up(port)
        deployer = deploy(port, tmp_path, "control.on_timeout=stop")
        wait_until(lambda: len(fresh_sends(tmp_path, 0)) >= 20, 240, "20 fresh actions sent")
        killed_at = time.time()
        server.popen.kill()
        assert deployer.popen.wait(60) == 2, deployer.output()[-3000:]
        exited_at = time.time()
        stopped_at = last_tick(tmp_path)
        last_send = sends(tmp_path)[-1][0]
        stats = json.loads((tmp_path / "deploy" / "deploy" / "stats.json").read_text())
    finally:
        for process in (deployer, server):
            if process is not None:
                process.close()
    report("SIGKILL, stop", stopping_tick=stopped_at - killed_at, process_exit=exited_at - killed_at)
    assert one_error_line(deployer).startswith("error: watchdog: no fresh action for 0.5")
    assert last_send < stopped_at and stats["watchdog_ticks"] == 1 and stats["ticks"] >= 20
    assert MAX_LATENCY - 1 / HZ < stopped_at - killed_at <= MAX_LATENCY + 4 / HZ + 2 / HZ + 0.25


@pytest.mark.alone
@pytest.mark.slow
def test_a_stopped_server_sigstop_is_caught_by_the_watchdog_within_max_latency_and_a_tick(policy_folders, tmp_path):
    port, server, deployer = free_port(), None, None
    try:
        server = serve(policy_folders[1], port, tmp_path)  # a request every tick: no planned actions to spend
        warm_up(port)
        deployer = deploy(port, tmp_path, "control.on_timeout=stop")
        wait_until(lambda: len(fresh_sends(tmp_path, 0)) >= 20, 240, "20 fresh actions sent")
        wait_until(lambda: just_sent_fresh(tmp_path), 60, "a fresh action at the last tick")
        stopped_at = time.time()
        server.popen.send_signal(signal.SIGSTOP)
        assert deployer.popen.wait(60) == 2, deployer.output()[-3000:]
        exited_at = time.time()
        stopping_tick = last_tick(tmp_path)
        last_fresh = fresh_sends(tmp_path, 0)[-1]
        stats = json.loads((tmp_path / "deploy" / "deploy" / "stats.json").read_text())
    finally:
        for process in (deployer, server):
            if process is not None:
                process.close()  # SIGCONT, then kill
    report("SIGSTOP, stop", stopping_tick=stopping_tick - stopped_at, process_exit=exited_at - stopped_at,
           last_fresh_action_to_stopping_tick=stopping_tick - last_fresh)  # fmt: skip
    assert one_error_line(deployer).startswith("error: watchdog: no fresh action for 0.5")
    assert stats["watchdog_ticks"] == 1
    # The watchdog fires at the first tick that finds no fresh action for max_latency. A tick's start is
    # logged before it reads the robot and waits for its chunk, which on a loaded machine (tests run with
    # pytest -n) can take up to another 0.1 s: the watchdog's check comes that much later than
    # the logged start. The last reply may still come in at the tick after the SIGSTOP.
    assert MAX_LATENCY - 1 / HZ - 0.1 < stopping_tick - last_fresh <= MAX_LATENCY + 1 / HZ + 0.05
    assert MAX_LATENCY - 1 / HZ - 0.1 < stopping_tick - stopped_at <= MAX_LATENCY + 2 / HZ + 0.1
    assert exited_at - stopping_tick < 10  # closing a connection to a silent server is bounded


@pytest.mark.slow
def test_a_restarted_server_is_reconnected_to_and_the_loop_takes_fresh_actions_again(policy_folders, tmp_path):
    port, servers, deployer = free_port(), [], None
    try:
        servers.append(serve(policy_folders[4], port, tmp_path))
        warm_up(port)
        deployer = deploy(port, tmp_path, "control.on_timeout=hold", "control.backoff_max=1.0")
        wait_until(lambda: len(fresh_sends(tmp_path, 0)) >= 20, 240, "20 fresh actions sent")
        killed_at = time.time()
        servers[0].popen.kill()
        time.sleep(1.0)
        servers.append(serve(policy_folders[4], port, tmp_path, "serve_again"))
        back_at = time.time()
        wait_until(lambda: len(fresh_sends(tmp_path, back_at)) >= 20, 120, "20 fresh actions after the restart")
        (tmp_path / "stop").touch()
        assert deployer.popen.wait(60) == 0, deployer.output()[-3000:]
        resumed_at = fresh_sends(tmp_path, back_at)[0]
        stats = json.loads((tmp_path / "deploy" / "deploy" / "stats.json").read_text())
    finally:
        for process in [deployer, *servers]:
            if process is not None:
                process.close()
    report("restart", first_held_tick=first_held_after(tmp_path, killed_at) - killed_at,
           server_ready_to_fresh_action=resumed_at - back_at)  # fmt: skip
    assert resumed_at - back_at <= 1.0 + 2.0 + 0.5  # one backoff, the reconnection and the request
    assert stats["reconnects"] >= 1 and stats["watchdog_ticks"] >= 1 and stats["failed_requests"] >= 1
    assert "reconnected to the policy server" in deployer.output() and "Traceback" not in deployer.output()
