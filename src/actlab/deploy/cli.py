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
from hydra.utils import instantiate
from omegaconf import DictConfig

from actlab.config.entry_points import api_key as read_api_key
from actlab.config.entry_points import checkpoint_command
from actlab.deploy.loop import ControlLoop, WatchdogStop
from actlab.deploy.policies import LocalPolicy, RemotePolicy
from actlab.errors import ActlabError, reason
from actlab.export.acting import load_acting_policy

log = logging.getLogger("actlab")


def deploy(cfg: DictConfig) -> dict[str, Any]:
    """The Hydra task of actlab-deploy: builds the robot and the policy, runs `control.episodes` episodes.
    The statistics are written however the run ends (done, watchdog stop, Ctrl-C, an error); a watchdog
    stop is then an ActlabError: one line, exit status 2."""
    control = cfg.control
    policy = make_policy(cfg)
    try:
        loop = ControlLoop(policy, control, policy.info.get("action_range"))
        robot = instantiate(cfg.robot)
    except BaseException:
        policy.close()
        raise
    if loop.bounds is None and control.clip:
        log.warning("the policy does not say its actions' range (an older or imported folder): actions are not clipped")
    log.info(
        f"Control loop at {control.frequency:g} Hz, {'background' if loop.background else 'synchronous'} inference"
        f"{' (dry run)' if control.dry_run else ''}, policy {cfg.policy.server or cfg.checkpoint}"
    )
    episodes, stopped = [], None
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)  # the loop gets the GIL back within 0.5 ms of waking (default 5 ms)
    try:
        for _ in range(control.episodes):
            loop.run_episode(robot, control.max_steps)
            if hasattr(robot, "result"):
                episodes.append(robot.result())
                log.info(f"Episode {len(episodes) - 1}: {episodes[-1]}")
    except WatchdogStop as e:
        stopped = e
    finally:
        sys.setswitchinterval(switch_interval)
        for part in (policy, loop, robot):  # the policy first: closing its connection ends a request's wait
            close_quietly(part)
        stats = loop.stats.summary()
        if episodes:
            stats["success_rate"] = float(np.mean([e["success"] for e in episodes]))
            stats["episodes"] = len(episodes)
        out_dir = Path(cfg.paths.output_dir) / "deploy"
        write_stats(out_dir, stats, episodes)
    if stopped is not None:
        raise ActlabError(
            f"watchdog: {stopped}; stopped the robot (control.on_timeout=stop), statistics in {out_dir / 'stats.json'}"
        )
    return stats


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
        + (f"; success {100 * s['success_rate']:.1f} % over {s['episodes']} episodes" if episodes else "")
    )
    log.info(f"Statistics: {out_dir / 'stats.json'}")


main = checkpoint_command("deploy", deploy)


if __name__ == "__main__":
    main()
