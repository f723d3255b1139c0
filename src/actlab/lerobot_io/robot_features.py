"""A LeRobot robot's observations and actions as a policy's features, by name, not by position.

A robot says what it gives and takes (`observation_features`: `"<motor>.pos": float`, `"<camera>": (H, W, 3)`;
`action_features`); a checkpoint says what its policy was trained on (the state and action names and the
cameras the training dataset recorded in info.json). `match_robot` compares the two before the first tick
and returns a `RobotFeatureMap`, or one line listing every difference. Frames are built with LeRobot's own
helpers (`hw_to_dataset_features`, `build_dataset_frame`, as lerobot-record builds them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from actlab.errors import ActlabError
from actlab.features import ACTION, OBS_IMAGES, OBS_STATE

log = logging.getLogger("actlab")


@dataclass
class RobotFeatureMap:
    state_names: list[str]  # the robot's observation keys, in the policy's order
    action_names: list[str]  # the robot's action keys, in the policy's order
    cameras: dict[str, str] = field(default_factory=dict)  # policy image key -> robot camera name
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # policy image key -> (H, W) to resize to

    def observation(self, raw: dict[str, Any]) -> dict[str, np.ndarray]:
        """The robot's observation as the policy's features: the state vector in trained order, camera frames
        (H x W x 3 uint8) under the trained camera names, resized where asked."""
        from lerobot.datasets.utils import build_dataset_frame

        specs = {OBS_STATE: {"dtype": "float32", "shape": (len(self.state_names),), "names": self.state_names}}
        out = build_dataset_frame(specs, raw, prefix=OBS_STATE) if self.state_names else {}
        for key, camera in self.cameras.items():
            frame = np.asarray(raw[camera])
            if key in self.sizes and frame.shape[:2] != self.sizes[key]:
                frame = resize(frame, self.sizes[key])
            out[key] = frame
        return out

    def action(self, vector: np.ndarray) -> dict[str, float]:
        """A policy action as the robot's `{name: value}`."""
        return {name: float(v) for name, v in zip(self.action_names, vector, strict=True)}

    def sent(self, returned: dict[str, Any] | None, vector: np.ndarray) -> np.ndarray:
        """What the robot says it sent (LeRobot clips to `max_relative_target`) as a vector in policy order."""
        if not returned:
            return vector
        return np.array([float(returned.get(n, v)) for n, v in zip(self.action_names, vector, strict=True)], np.float32)


def match_robot(
    observation_features: dict[str, Any],
    action_features: dict[str, Any],
    inputs: dict[str, dict],
    state_names: list[str] | None,
    action_names: list[str] | None,
    camera_map: dict[str, str] | None = None,
    resize_frames: bool = False,
) -> RobotFeatureMap:
    """The map from a robot (LeRobot's feature dicts) to a policy (`inputs`: its input features as
    `{key: {"type", "shape"}}`; names from its training data). Every difference is listed in one line."""
    from lerobot.datasets.utils import hw_to_dataset_features

    robot_obs = hw_to_dataset_features(observation_features, "observation", use_video=True)
    robot_state = (robot_obs.get(OBS_STATE) or {}).get("names") or []
    robot_action = (hw_to_dataset_features(action_features, ACTION).get(ACTION) or {}).get("names") or []
    robot_cameras = {k: tuple(v) for k, v in observation_features.items() if isinstance(v, tuple)}
    problems: list[str] = []

    state_dim = inputs[OBS_STATE]["shape"][0] if OBS_STATE in inputs else 0
    state = _order("state", state_names, robot_state, state_dim, problems) if state_dim else []
    action_dim = len(action_names) if action_names else len(robot_action)
    action = _order("action", action_names, robot_action, action_dim, problems)

    for key, feature in inputs.items():
        if feature["type"] == "ENV":
            problems.append(f"the policy reads '{key}' (simulator state a robot does not give)")
    camera_map = dict(camera_map or {})
    unknown = [c for c in camera_map if c not in robot_cameras]
    if unknown:
        problems.append(f"robot.camera_map names cameras the robot lacks: {unknown} (it has {list(robot_cameras)})")
    by_policy_name = {camera_map.get(c, c): c for c in robot_cameras}
    cameras, sizes = {}, {}
    for key, feature in inputs.items():
        if feature["type"] != "VISUAL":
            continue
        name = key.removeprefix(f"{OBS_IMAGES}.")
        if name not in by_policy_name:
            problems.append(f"no robot camera for the policy's '{name}' (robot cameras: {list(robot_cameras)}; "
                            "map one with robot.camera_map={<robot camera>: " + name + "})")  # fmt: skip
            continue
        camera = by_policy_name[name]
        _, height, width = feature["shape"]
        got = robot_cameras[camera][:2]
        if got != (height, width):
            if not resize_frames:
                problems.append(f"camera '{camera}' gives {got[0]}x{got[1]} frames, the policy was trained on "
                                f"{height}x{width} (robot.resize=true resizes them)")  # fmt: skip
            sizes[key] = (height, width)
        cameras[key] = camera
    if problems:
        raise ActlabError("the robot does not match the policy: " + "; ".join(problems))
    return RobotFeatureMap(state, action, cameras, sizes)


def _order(what: str, trained: list[str] | None, robot: list[str], dim: int, problems: list[str]) -> list[str]:
    """The robot's names in the trained order; differences appended to `problems`."""
    if trained and trained == [f"{what if what == ACTION else OBS_STATE}[{i}]" for i in range(len(trained))]:
        trained = None  # placeholders: the data did not name them
    if not trained:
        if len(robot) != dim:
            problems.append(f"the robot has {len(robot)} {what} values {robot}, the policy {dim}")
        else:
            log.warning(f"the checkpoint does not name its {what} dimensions: the robot's order {robot} is used")
        return robot
    missing = [n for n in trained if n not in robot]
    extra = [n for n in robot if n not in trained]
    if missing:
        problems.append(f"{what} {missing} trained on but not on the robot")
    if extra:
        problems.append(f"robot {what} {extra} not in the training data")
    return list(trained)


def resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    height, width = size
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
