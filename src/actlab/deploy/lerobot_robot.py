"""`robot=lerobot robot.type=<type> robot.<field>=...`: any LeRobot robot in the control loop, through
LeRobot's own drivers (actlab.lerobot_io.robots) and feature helpers (actlab.lerobot_io.robot_features).

Before the first tick the robot's features are compared with the checkpoint's (names, cameras, frame
sizes), then the robot is connected (calibrated as LeRobot does it: a missing calibration is asked for on
the terminal). Episodes last `robot.episode_time_s` (or until the robot or an operator ends them); between
two episodes `robot.reset_time_s` leave time to reset the scene. LeRobot's keyboard events work as in
lerobot-record: right arrow ends the episode (or the reset), left arrow ends it and records it again, Esc
ends the run. Whatever ends the run (done, Ctrl-C, a lost connection, an exception), `close()` disconnects
the robot (torque off where the robot's config says so, as LeRobot does it).

Success labels: a robot that knows (a simulator behind LeRobot's `Robot` interface) may expose `success`;
otherwise, with `robot.ask_success=true` and a terminal, the operator is asked after each episode.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import numpy as np

from actlab.errors import ActlabError
from actlab.lerobot_io.robot_features import RobotFeatureMap, match_robot
from actlab.lerobot_io.robots import make_lerobot_robot

log = logging.getLogger("actlab")


class LeRobotRobot:
    def __init__(
        self,
        type: str,  # noqa: A002 - LeRobot's own name for it (robot.type=so101_follower)
        camera_map: dict[str, str] | None = None,
        resize: bool = False,
        calibrate: bool = True,
        episode_time_s: float | None = None,
        reset_time_s: float = 0.0,
        keyboard: bool = True,
        ask_success: bool = False,
        **fields: Any,
    ):
        for name, value in (("episode_time_s", episode_time_s), ("reset_time_s", reset_time_s)):
            if value is not None and not value >= 0:
                raise ActlabError(f"robot.{name}={value}; expected seconds >= 0")
        self.robot = make_lerobot_robot(type, fields)
        self.robot_type = type
        self.camera_map, self.resize, self.calibrate = camera_map, resize, calibrate
        self.episode_time_s, self.reset_time_s = episode_time_s, reset_time_s
        self.keyboard, self.ask_success = keyboard, ask_success
        self.map: RobotFeatureMap | None = None
        self.listener, self.events = None, {"exit_early": False, "rerecord_episode": False, "stop_recording": False}
        self.episode, self.started, self.steps = -1, 0.0, 0

    # ------------------------------------------------------------------------------ set-up
    def prepare(self, info: dict[str, Any]) -> None:
        """Checks the robot against the policy (`info`: the policy's metadata), then connects it."""
        self.map = match_robot(
            self.robot.observation_features,
            self.robot.action_features,
            info["input_features"],
            info.get("state_names"),
            info.get("action_names"),
            self.camera_map,
            self.resize,
        )
        try:
            self.robot.connect(calibrate=self.calibrate)
        except Exception as e:  # noqa: BLE001 - drivers raise what their SDKs raise
            raise ActlabError(f"robot.type={self.robot_type}: could not connect ({e})") from None
        if self.keyboard:
            from lerobot.utils.control_utils import init_keyboard_listener

            self.listener, self.events = init_keyboard_listener()
        cameras = list(self.map.cameras.values())
        log.info(f"Connected {self.robot} ({len(self.map.action_names)} actions, cameras {cameras})")

    # ------------------------------------------------------------------------------ the loop's interface
    def reset(self) -> None:
        if self.episode >= 0 and self.reset_time_s and not self.events["stop_recording"]:
            log.info(f"Reset the scene: {self.reset_time_s:g} s (right arrow: start now)")
            self._wait(self.reset_time_s)
        self.episode += 1
        self.events["exit_early"] = self.events["rerecord_episode"] = False
        if hasattr(self.robot, "reset"):  # a robot that can reset itself (a simulator behind the interface)
            self.robot.reset()
        self.started, self.steps = time.perf_counter(), 0

    def get_observation(self) -> dict[str, np.ndarray]:
        try:
            raw = self.robot.get_observation()
        except Exception as e:  # noqa: BLE001 - a driver's failure ends the run with one line
            raise self._failed("get_observation", e) from None
        return self.map.observation(raw)

    def send_action(self, action: np.ndarray) -> np.ndarray:
        """Sends `{name: value}`; returns what the robot says it sent (after its own clipping)."""
        try:
            returned = self.robot.send_action(self.map.action(action))
        except Exception as e:  # noqa: BLE001
            raise self._failed("send_action", e) from None
        self.steps += 1
        return self.map.sent(returned, action)

    def _failed(self, call: str, error: Exception) -> ActlabError:
        return ActlabError(
            f"robot.type={self.robot_type}: {call} failed in episode {self.episode} after {self.steps} actions "
            f"({type(error).__name__}: {error}); the robot was disconnected, what was recorded is kept"
        )

    @property
    def done(self) -> bool:
        if self.events["exit_early"] or getattr(self.robot, "done", False):
            return True
        return self.episode_time_s is not None and time.perf_counter() - self.started >= self.episode_time_s

    @property
    def success(self) -> bool | None:
        return getattr(self.robot, "success", None)

    @property
    def rerecord(self) -> bool:
        return bool(self.events["rerecord_episode"])

    @property
    def stop_requested(self) -> bool:
        return bool(self.events["stop_recording"])

    def result(self) -> dict[str, Any]:
        success = self.success
        if success is None and self.ask_success and sys.stdin.isatty():
            success = input(f"Episode {self.episode}: success? [y/N] ").strip().lower().startswith("y")
        seconds = time.perf_counter() - self.started
        return {"episode": self.episode, "success": success, "steps": self.steps, "duration_s": round(seconds, 3)}

    def close(self) -> None:
        if self.listener is not None:
            self.listener.stop()
        if self.robot.is_connected:
            self.robot.disconnect()

    def _wait(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end and not self.events["exit_early"]:
            time.sleep(0.05)
        self.events["exit_early"] = False
