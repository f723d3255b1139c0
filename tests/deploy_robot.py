"""A robot adapter for tests of actlab-deploy as a process, with no simulator behind it:

    actlab-deploy policy.server=ws://... robot._target_=tests.deploy_robot.FileRobot '~robot.env' \
        +robot.events=/tmp/events.txt +robot.stop_file=/tmp/stop

Its observation is a 6-D state that changes every tick. Every tick (`get_observation`) and every action it
is sent is appended to `events` as it happens ("<unix time> tick" / "<unix time> send <json list>"), so a
test in another process can see when the loop ticked and what it sent; the episode is done once
`stop_file` exists.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np


class FileRobot:
    def __init__(self, events: str, stop_file: str | None = None, state_dim: int = 6):
        self.file = open(events, "a", buffering=1)  # noqa: SIM115 - one line per event, closed in close()
        self.stop_file = Path(stop_file) if stop_file else None
        self.state_dim = state_dim
        self.ticks = 0

    def reset(self) -> None:
        self.file.write(f"{time.time():.6f} reset\n")

    def get_observation(self) -> dict[str, np.ndarray]:
        self.ticks += 1
        self.file.write(f"{time.time():.6f} tick\n")
        return {"observation.state": np.sin(0.1 * self.ticks + np.arange(self.state_dim)).astype(np.float32)}

    def send_action(self, action: np.ndarray) -> None:
        self.file.write(f"{time.time():.6f} send {json.dumps(np.asarray(action).tolist())}\n")

    @property
    def done(self) -> bool:
        return self.stop_file is not None and self.stop_file.exists()

    def close(self) -> None:
        self.file.close()


def read_events(path: Path) -> list[tuple[float, str, list[float] | None]]:
    """The events a FileRobot wrote: (unix time, "reset" | "tick" | "send", the action sent or None)."""
    events = []
    for line in path.read_text().split("\n")[:-1]:  # not a last line still being written
        when, kind, *rest = line.split(" ", 2)
        events.append((float(when), kind, json.loads(rest[0]) if rest else None))
    return events
