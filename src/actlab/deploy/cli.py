"""`actlab-deploy checkpoint=<folder> robot=<adapter> control.frequency=10` (or `python -m actlab.deploy`):
builds the robot and the policy (in this process, or `policy.server=ws://host:port` for one served by
actlab-serve), runs `control.episodes` episodes of the control loop (actlab.deploy.loop), and at the end
(or on Ctrl-C, a watchdog stop, any error) prints and writes `deploy/stats.json`: achieved frequency, tick
jitter p50/p99, missed deadlines, inference latency p50/p99, underruns, held and refused actions, watchdog
ticks, reconnections; with a simulator, `deploy/episodes.jsonl`.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from actlab.config.entry_points import api_key as read_api_key
from actlab.config.entry_points import checkpoint_command
from actlab.deploy.loop import ControlLoop, WatchdogStop
from actlab.deploy.policies import LocalPolicy, RemotePolicy
from actlab.deploy.recording import recorded_features, recording
from actlab.errors import ActlabError, reason
from actlab.export.acting import load_acting_policy

log = logging.getLogger("actlab")


def deploy(cfg: DictConfig) -> dict[str, Any]:
    """The Hydra task of actlab-deploy: builds the robot and the policy, runs `control.episodes` episodes.
    The statistics and the recording are written however the run ends (done, watchdog stop, Ctrl-C, an
    error); a watchdog stop is then an ActlabError: one line, exit status 2."""
    control = cfg.control
    policy = make_policy(cfg)
    robot = None
    try:
        loop = ControlLoop(policy, control, policy.info.get("action_range"))
        robot = make_robot(cfg.robot)
        if hasattr(robot, "prepare"):  # a LeRobot robot: its features checked against the policy's, connected
            robot.prepare(policy.info)
    except BaseException:
        for part in (policy, robot):
            if part is not None:
                close_quietly(part)
        raise
    if loop.bounds is None and control.clip:
        log.warning("the policy does not say its actions' range (an older or imported folder): actions are not clipped")
    log.info(
        f"Control loop at {control.frequency:g} Hz, {'background' if loop.background else 'synchronous'} inference"
        f"{' (dry run)' if control.dry_run else ''}, policy {cfg.policy.server or cfg.checkpoint}"
    )
    episodes, stopped = [], None
    out_dir = Path(cfg.paths.output_dir) / "deploy"
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)  # the loop gets the GIL back within 0.5 ms of waking (default 5 ms)
    display = None
    try:
        display = make_display(control, policy.info)
        source = {"checkpoint": cfg.checkpoint, "server": cfg.policy.server, "frequency": control.frequency}
        robot_type = getattr(robot, "robot_type", None) or cfg.robot.get("_target_", "").rsplit(".", 1)[-1]
        features = recorded_features(policy.info)
        with recording(control, policy.info, features, control.frequency, robot_type, source) as recorder:
            run_episodes(loop, robot, control, recorder, display, episodes)
    except WatchdogStop as e:
        stopped = e
    finally:
        sys.setswitchinterval(switch_interval)
        for part in (policy, loop, robot, display):  # the policy first: closing its connection ends a request's wait
            if part is not None:
                close_quietly(part)
        stats = loop.stats.summary()
        labelled = [e["success"] for e in episodes if e.get("success") is not None]
        if labelled:
            stats["success_rate"] = float(np.mean(labelled))
            stats["episodes"] = len(labelled)
        write_stats(out_dir, stats, episodes)
    if stopped is not None:
        raise ActlabError(
            f"watchdog: {stopped}; stopped the robot (control.on_timeout=stop), statistics in {out_dir / 'stats.json'}"
        )
    return stats


def run_episodes(loop: ControlLoop, robot, control: DictConfig, recorder, display, episodes: list[dict]) -> None:
    """`control.episodes` episodes; an episode the operator asks to record again (left arrow) is run again,
    Esc ends the run after the episode in progress."""
    while len(episodes) < control.episodes:
        loop.run_episode(robot, control.max_steps, recorder, display)
        if getattr(robot, "rerecord", False):
            log.info("Recording the episode again")
            if recorder is not None:
                recorder.discard_episode()
            continue
        result = robot.result() if hasattr(robot, "result") else {"episode": len(episodes)}
        episodes.append(result)
        if recorder is not None:
            recorder.save_episode(result)
        log.info(f"Episode {len(episodes) - 1}: {result}")
        if getattr(robot, "stop_requested", False):
            log.info("Stopped by the operator (Esc)")
            break


def make_robot(robot_cfg: DictConfig):
    """The robot adapter of `robot=...` (Hydra's instantiate); its own one-line errors stay one line."""
    try:
        return instantiate(robot_cfg)
    except InstantiationException as e:
        if isinstance(e.__cause__, ActlabError):
            raise e.__cause__ from None
        raise ActlabError(f"robot: {' '.join(str(e).split())}") from None


def make_display(control: DictConfig, info: dict[str, Any]):
    if not control.display:
        return None
    from actlab.deploy.display import RerunDisplay

    return RerunDisplay(info["action_names"], info.get("state_names"), control.display_to)


def make_policy(cfg: DictConfig) -> LocalPolicy | RemotePolicy:
    control = cfg.control
    if cfg.policy.server:
        for key in ("request_timeout", "backoff_min", "backoff_max"):
            if not control[key] > 0:
                raise ActlabError(f"control.{key}={control[key]}; expected a positive number of seconds")
        backoff = (control.backoff_min, max(control.backoff_min, control.backoff_max))
        key = read_api_key(cfg.policy.api_key)
        return RemotePolicy(cfg.policy.server, key, control.request_timeout, control.reconnect, backoff)
    if cfg.checkpoint:
        return LocalPolicy(load_acting_policy(cfg, control.device))
    raise ActlabError("pass checkpoint=<policy folder>, or policy.server=ws://host:port for a served policy")


def close_quietly(part) -> None:
    """Closes the robot, the loop or the policy; a failure to is logged, and the others still close."""
    try:
        part.close()
    except Exception as e:  # noqa: BLE001 - the statistics must still be written
        log.warning(f"closing the {type(part).__name__} failed ({reason(e)})")


def write_stats(out_dir: Path, stats: dict[str, Any], episodes: list[dict]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2))
    if episodes:
        (out_dir / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in episodes))
    s = stats
    log.info(
        f"Loop: {s['ticks']} ticks at {s['achieved_hz']:.2f} Hz (target {s['target_hz']:g}); jitter p50 "
        f"{s['jitter_p50_ms']:.2f} ms, p99 {s['jitter_p99_ms']:.2f} ms; missed deadlines {s['missed_deadlines']}; "
        f"inference p50 {s['inference_p50_ms']:.1f} ms, p99 {s['inference_p99_ms']:.1f} ms over {s['chunks']} "
        f"chunks; underruns {s['underruns']}; held {s['held_ticks']}, watchdog {s['watchdog_ticks']} ticks; "
        f"rejected {s['rejected_actions']} actions, {s['rejected_chunks']} chunks; reconnects {s['reconnects']}"
        + (f"; success {100 * s['success_rate']:.1f} % over {s['episodes']} episodes" if "success_rate" in s else "")
    )
    log.info(f"Statistics: {out_dir / 'stats.json'}")


main = checkpoint_command("deploy", deploy)


if __name__ == "__main__":
    main()
