"""LeRobot's robot drivers, built from LeRobot's own config classes: the `RobotConfig` registry (every robot
LeRobot ships, and `lerobot_robot_*` plugin packages found among the installed distributions), camera
configs from the `CameraConfig` registry, and `make_robot_from_config`.

    robot = make_lerobot_robot("so101_follower", {"port": "/dev/ttyACM0", "id": "arm",
                               "cameras": {"front": {"type": "opencv", "index_or_path": 0, ...}}})

Values are decoded by LeRobot's own parser (draccus), as `lerobot-record --robot.<field>=...` would be.

A robot type LeRobot does not know, a field its config does not have, or a value its config refuses is one
line (ActlabError) naming what exists. The type comes from the command line (like Hydra's `_target_`), never
from a file the user loads.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from actlab.config.strict import closest
from actlab.errors import ActlabError

log = logging.getLogger("actlab")

# LeRobot's robot packages register their config classes when imported (as lerobot-record imports them).
ROBOT_MODULES = [
    "bi_openarm_follower", "bi_so_follower", "earthrover_mini_plus", "hope_jr", "koch_follower", "lekiwi",
    "omx_follower", "openarm_follower", "reachy2", "so_follower", "unitree_g1",
]  # fmt: skip
CAMERA_MODULES = ["opencv", "realsense", "reachy2_camera", "zmq"]


def register_robot_types() -> None:
    """Imports LeRobot's robot and camera packages and third-party `lerobot_robot_*` / `lerobot_camera_*`
    plugins, so that their configs are in the registries. A package whose optional dependency is missing
    (e.g. a robot SDK) is skipped: its type is then not offered."""
    import importlib

    from lerobot.utils.import_utils import register_third_party_plugins

    for package, names in (("lerobot.robots", ROBOT_MODULES), ("lerobot.cameras", CAMERA_MODULES)):
        for name in names:
            try:
                importlib.import_module(f"{package}.{name}")
            except Exception as e:  # noqa: BLE001 - an optional driver's SDK is not installed
                log.debug(f"{package}.{name} not available: {e}")
    register_third_party_plugins()


def robot_types() -> list[str]:
    from lerobot.robots import RobotConfig

    return sorted(RobotConfig.get_known_choices())


def make_lerobot_robot(robot_type: str, fields: dict[str, Any]) -> Any:
    """LeRobot's `Robot` for `robot_type` with `fields` set on its config (not connected)."""
    from lerobot.robots import RobotConfig, make_robot_from_config

    register_robot_types()
    known = robot_types()
    if robot_type not in known:
        raise ActlabError(f"robot.type={robot_type!r}{did_you_mean(robot_type, known)}; LeRobot knows {known}")
    config_class = RobotConfig.get_choice_class(robot_type)
    names = {f.name for f in dataclasses.fields(config_class) if f.init}
    # None (and no cameras) leave a field to the robot's own default, or out where its config lacks it
    fields = {k: v for k, v in fields.items() if v is not None and not (k == "cameras" and not v and k not in names)}
    check_fields(config_class, fields, "robot")
    for name, settings in (fields.get("cameras") or {}).items():
        check_camera(name, settings)
    config = decode(RobotConfig, {"type": robot_type, **fields}, "robot")
    try:
        return make_robot_from_config(config)
    except Exception as e:  # noqa: BLE001 - LeRobot's drivers raise what their SDKs raise
        raise ActlabError(f"robot.type={robot_type}: LeRobot could not build the robot ({e})") from None


def check_camera(name: str, settings: Any) -> None:
    """`robot.cameras.<name>`: `{type: opencv, index_or_path: 0, width: 640, height: 480, fps: 30}`."""
    from lerobot.cameras import CameraConfig

    if not isinstance(settings, dict):
        raise ActlabError(f"robot.cameras.{name}: expected a map of camera settings, got {settings!r}")
    known = sorted(CameraConfig.get_known_choices())
    kind = settings.get("type")
    if kind not in known:
        raise ActlabError(f"robot.cameras.{name}.type={kind!r}; expected one of {known}")
    check_fields(CameraConfig.get_choice_class(kind), {k: v for k, v in settings.items() if k != "type"},
                 f"robot.cameras.{name}")  # fmt: skip


def check_fields(config_class: type, fields: dict[str, Any], where: str) -> None:
    """An unknown field as one line, with the closest name and the fields that exist."""
    names = [f.name for f in dataclasses.fields(config_class) if f.init]
    unknown = [k for k in fields if k not in names]
    if unknown:
        k = unknown[0]
        name = config_class.__name__
        raise ActlabError(f"{where}.{k}: {name} has no field {k!r}{did_you_mean(k, names)}; fields: {names}")


def decode(config_class: type, values: dict[str, Any], where: str) -> Any:
    """The config, with LeRobot's own decoding (draccus: types such as paths, nested camera choices);
    a value it refuses is one line."""
    import draccus

    try:
        return draccus.decode(config_class, values)
    except Exception as e:  # noqa: BLE001 - draccus' DecodingError, or the config's own checks
        raise ActlabError(f"{where}: LeRobot refused these settings ({' '.join(str(e).split())})") from None


def did_you_mean(name: str, names: list[str]) -> str:
    """` (did you mean 'x'?)` when a name is close enough (the config layer's `closest`), else nothing."""
    if not names:
        return ""
    best, ratio = closest(name, names)
    return f" (did you mean {best!r}?)" if ratio >= 0.6 else ""
