"""The fixed-rate control loop of `actlab-deploy` (the command: actlab.deploy.cli).

Ticks are scheduled at absolute times (start + k / frequency), so lateness never accumulates into drift;
a tick that starts after the next one was due counts as a missed deadline, and the ticks it overran are
skipped rather than run in a burst. Each tick reads the robot's observation, takes the action planned for
it, clips it to the range of the training data's actions (widened by `control.clip_margin` of that range
on each side) and sends it, unless `control.dry_run`.

Which action a tick sends comes from actlab.policy.selection, as everywhere a policy acts:
- `control.refill_threshold=0`: exactly `select_action` (an ActionQueue: a chunk is predicted, and waited
  for, when the last chunk's `n_action_steps` actions are spent; or every tick with temporal ensembling).
- `control.refill_threshold>0`: the next chunk is requested in the background as soon as fewer than
  `threshold * n_action_steps` planned actions remain, so inference overlaps execution; an ActionPlan drops
  the ticks that passed while it was computed and merges overlaps (`control.merge`: latest | average |
  ensemble). A tick with no planned action (an underrun) repeats the last action, and when no fresh action
  has arrived for `control.max_latency` seconds the watchdog holds the last action
  (`control.on_timeout=hold`) or stops.
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
from omegaconf import DictConfig

from actlab.deploy.stats import LoopStats
from actlab.errors import ActlabError
from actlab.policy.selection import MERGES, ActionPlan, ActionQueue

TIMEOUTS = ("hold", "stop")


class WatchdogStop(Exception):
    """No fresh action arrived for max_latency with control.on_timeout=stop."""


# ----------------------------------------------------------------------------------------- the loop
class ControlLoop:
    """Runs episodes of a robot at `control.frequency` with a policy. With `refill_threshold=0` the chunks
    are computed on the loop's thread, when the queue is empty (select_action); above 0, on a thread of
    their own while the loop keeps ticking. (That thread has its own OpenMP team, so libgomp stops
    busy-waiting between parallel regions: a chunk takes longer, but the cores stay free for the clock.
    Measured on 2 cores at 50 Hz: tick jitter p99 0.2 ms with it, 3.6 ms with inference on the main
    thread's busy-waiting team.)"""

    def __init__(self, policy, control: DictConfig, action_range: dict | None):
        if control.frequency <= 0:
            raise ActlabError(f"control.frequency={control.frequency}; expected a positive rate in Hz")
        if control.merge not in MERGES:
            raise ActlabError(f"control.merge={control.merge!r} is not one of {list(MERGES)}")
        if control.on_timeout not in TIMEOUTS:
            raise ActlabError(f"control.on_timeout={control.on_timeout!r} is not one of {list(TIMEOUTS)}")
        if not 0 <= control.refill_threshold <= 1:
            raise ActlabError(f"control.refill_threshold={control.refill_threshold}; expected 0 to 1")
        self.policy, self.control = policy, control
        info = policy.info
        self.period = 1.0 / control.frequency
        self.background = control.refill_threshold > 0
        # select_action's own queue / ensembling, on this side of the wire (the server returns whole chunks)
        self.queue = ActionQueue(info["chunk_size"], info["n_action_steps"], info.get("temporal_ensemble_coeff"))
        self.plan = ActionPlan(info["n_action_steps"], control.merge, control.ensemble_coeff)
        self.refill_below = max(1, math.ceil(control.refill_threshold * info["n_action_steps"]))
        self.bounds = clip_bounds(action_range, control.clip_margin) if control.clip else None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self.stopping = threading.Event()  # set from another thread to end the episode at the next tick
        self.stats = LoopStats(self.period)

    def run_episode(self, robot, max_steps: int | None) -> None:
        """Ticks until the robot says the episode is done, `max_steps` ticks, `stopping`, or the watchdog."""
        self.robot = robot
        self.robot.reset()
        self.policy.reset()
        self.queue.reset()
        self.plan.reset()
        pending: Future | None = None
        last_action, last_fresh = None, time.perf_counter()
        start, tick, first_tick = time.perf_counter(), 0, len(self.stats.starts)
        while not (getattr(robot, "done", False) or self.stopping.is_set() or (max_steps and tick >= max_steps)):
            due = start + tick * self.period
            _sleep_until(due)
            now = time.perf_counter()
            self.stats.starts.append(now)
            self.stats.jitter.append(now - due)
            inputs = self.policy.observe(self.robot.get_observation())
            if self.background:
                action, pending = self._background_action(inputs, tick, pending, last_action is None)
            else:
                action = self._sync_action(inputs)
            if action is not None:
                last_fresh = time.perf_counter()
            else:
                self.stats.underruns += 1
                if time.perf_counter() - last_fresh > self.control.max_latency:
                    self.stats.watchdog += 1
                    if self.control.on_timeout == "stop":
                        raise WatchdogStop(f"no fresh action for {self.control.max_latency} s")
                action = last_action
            if self.bounds is not None:
                action = np.clip(action, *self.bounds)
            if not self.control.dry_run:
                self.robot.send_action(action)
            last_action = action
            tick += 1
            overrun = time.perf_counter() - (start + tick * self.period)
            if overrun > 0:  # the next tick is already due: count it, and skip the ticks that passed entirely
                self.stats.missed += 1
                skipped = int(overrun // self.period)
                self.stats.skipped += skipped
                tick += skipped
        if pending is not None:
            pending.cancel()
        episode = self.stats.starts[first_tick:]
        if episode:
            self.stats.spans.append((len(episode), episode[-1] - episode[0]))

    def _sync_action(self, inputs: dict) -> np.ndarray:
        """select_action: a chunk is computed (and waited for) when the queue is empty."""
        if self.queue.needs_chunk:
            chunk, _, seconds = self._timed_chunk(inputs, 0)
            self.stats.latency.append(seconds)
            self.queue.add_chunk(torch.from_numpy(chunk)[None])
        return self.queue.pop()[0].numpy()

    def _background_action(
        self, inputs: dict, tick: int, pending: Future | None, first: bool
    ) -> tuple[np.ndarray | None, Future | None]:
        """The planned action for `tick`; merges a chunk that arrived and requests the next one when the plan
        runs low. At an episode's first tick there is nothing to repeat, so it waits for the first chunk."""
        if pending is not None and (pending.done() or first):
            chunk, observed_at, seconds = pending.result()
            self.stats.latency.append(seconds)
            self.stats.late_actions += self.plan.add(torch.from_numpy(chunk)[None], observed_at, tick)
            pending = None
        if pending is None and self.plan.remaining(tick) < self.refill_below:
            pending = self.executor.submit(self._timed_chunk, inputs, tick)
            if first:
                return self._background_action(inputs, tick, pending, first)
        action = self.plan.pop(tick)
        return (None if action is None else action[0].numpy()), pending

    def _timed_chunk(self, inputs: dict, tick: int) -> tuple[np.ndarray, int, float]:
        started = time.perf_counter()
        return self.policy.chunk(inputs), tick, time.perf_counter() - started

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


def clip_bounds(action_range: dict | None, margin: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The data's action range widened by `margin` of its width on each side; None without a range."""
    if not action_range:
        return None
    low, high = np.asarray(action_range["min"], np.float32), np.asarray(action_range["max"], np.float32)
    width = high - low
    return low - margin * width, high + margin * width


def _sleep_until(deadline: float) -> None:
    remaining = deadline - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)
