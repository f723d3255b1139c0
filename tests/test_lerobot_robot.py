"""robot=lerobot (issue 20): LeRobot robots in the control loop through LeRobot's own classes.

- Features by name: the robot's observation/action names are matched to the checkpoint's (the training
  data's), every difference in one line.
- LeRobot's registry: an unknown type or field is one line naming what exists.
- robot=so101 runs LeRobot's real SO101Follower with its Feetech motor bus mocked as LeRobot's own tests
  do (tests/robots/test_so100_follower.py): connect, observe, act, disconnect, and a recording.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from unittest.mock import MagicMock, patch

import numpy as np
import pytest
import torch

from actlab.errors import ActlabError
from actlab.features import PolicyFeature
from actlab.lerobot_io.robot_features import match_robot
from actlab.policy import ACTPolicy, ACTPolicyConfig

MOTORS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
NAMES = [f"{m}.pos" for m in MOTORS]
SMALL = dict(dim_model=32, n_heads=2, dim_feedforward=64, n_encoder_layers=1, n_decoder_layers=1, chunk_size=4,
             n_action_steps=4, use_vae=False)  # fmt: skip


def inputs(state: int = 6, cameras: dict[str, tuple[int, int]] | None = None) -> dict[str, dict]:
    out = {"observation.state": {"type": "STATE", "shape": [state]}}
    for name, (h, w) in (cameras or {}).items():
        out[f"observation.images.{name}"] = {"type": "VISUAL", "shape": [3, h, w]}
    return out


def robot_features(names=NAMES, cameras=None):
    return {**{n: float for n in names}, **{c: (*hw, 3) for c, hw in (cameras or {}).items()}}


def test_the_robots_values_are_taken_by_name_in_the_trained_order():
    shuffled = NAMES[::-1]
    fmap = match_robot(robot_features(shuffled), robot_features(shuffled), inputs(), NAMES, NAMES)
    raw = {n: float(i) for i, n in enumerate(NAMES)}
    np.testing.assert_array_equal(fmap.observation(raw)["observation.state"], np.arange(6, dtype=np.float32))
    assert fmap.action(np.arange(6)) == {n: float(i) for i, n in enumerate(NAMES)}
    clipped = {**fmap.action(np.arange(6)), "gripper.pos": 2.5}
    assert fmap.sent(clipped, np.arange(6, dtype=np.float32))[-1] == 2.5  # what the robot says it sent


def test_every_difference_is_listed_in_one_line():
    robot = robot_features([*NAMES[:-1], "wrist_yaw.pos"], {"wrist": (480, 640)})
    with pytest.raises(ActlabError) as e:
        match_robot(robot, robot_features(), inputs(cameras={"front": (96, 128)}), NAMES, NAMES)
    message = str(e.value)
    assert "\n" not in message
    for part in ("['gripper.pos'] trained on but not on the robot", "robot state ['wrist_yaw.pos'] not in the training",
                 "no robot camera for the policy's 'front'", "robot.camera_map"):  # fmt: skip
        assert part in message, message


def test_a_camera_map_and_resizing_make_another_camera_fit():
    robot = robot_features(cameras={"wrist": (480, 640)})
    with pytest.raises(ActlabError, match=r"gives 480x640 frames, the policy was trained on 96x128 \(robot.resize"):
        match_robot(robot, robot_features(), inputs(cameras={"front": (96, 128)}), NAMES, NAMES, {"wrist": "front"})
    fmap = match_robot(robot, robot_features(), inputs(cameras={"front": (96, 128)}), NAMES, NAMES,
                       {"wrist": "front"}, resize_frames=True)  # fmt: skip
    raw = {**{n: 0.0 for n in NAMES}, "wrist": np.zeros((480, 640, 3), np.uint8)}
    assert fmap.observation(raw)["observation.images.front"].shape == (96, 128, 3)


def test_unknown_robot_types_and_fields_are_one_line():
    from actlab.lerobot_io.robots import make_lerobot_robot

    unknown_type = r"robot.type='so101_folower' \(did you mean 'so101_follower'\?\); LeRobot knows"
    with pytest.raises(ActlabError, match=unknown_type):
        make_lerobot_robot("so101_folower", {})
    unknown_field = r"robot.prot: SOFollowerRobotConfig has no field 'prot' \(did you mean 'port'"
    with pytest.raises(ActlabError, match=unknown_field):
        make_lerobot_robot("so101_follower", {"prot": "/dev/null"})
    with pytest.raises(ActlabError, match=r"robot.cameras.front.type=.webcam.; expected one of"):
        make_lerobot_robot("so101_follower", {"port": "/dev/null", "cameras": {"front": {"type": "webcam"}}})


# ------------------------------------------------------------------------------------ SO-101, bus mocked
def so101_policy(folder: Path) -> Path:
    torch.manual_seed(0)
    config = ACTPolicyConfig(
        input_features={"observation.state": PolicyFeature("STATE", (6,))},
        output_features={"action": PolicyFeature("ACTION", (6,))},
        encoder={"name": "resnet18", "pretrained": None},
        action_range={"min": [0.0] * 6, "max": [100.0] * 6},
        fps=30.0,
        state_names=NAMES,
        action_names=NAMES,
        **SMALL,
    )
    ACTPolicy(config).eval().save_pretrained(folder)
    return folder


@contextmanager
def mocked_feetech_bus():
    """LeRobot's own way (tests/robots/test_so100_follower.py): the Feetech bus class replaced by a mock
    that reads motor i at position i, and `configure` (motor registers) skipped."""
    from lerobot.robots.so_follower import SO101Follower

    bus = MagicMock(name="FeetechBusMock")
    bus.is_connected = False
    bus.connect.side_effect = lambda *a, **k: setattr(bus, "is_connected", True)
    bus.disconnect.side_effect = lambda *a, **k: setattr(bus, "is_connected", False)

    @contextmanager
    def torque_disabled(*args, **kwargs):
        yield

    bus.torque_disabled.side_effect = torque_disabled

    def make_bus(*args, **kwargs):
        bus.motors = kwargs["motors"]
        bus.sync_read.return_value = {m: float(i) for i, m in enumerate(bus.motors, 1)}
        bus.is_calibrated = True
        return bus

    with (
        patch("lerobot.robots.so_follower.so_follower.FeetechMotorsBus", side_effect=make_bus),
        patch.object(SO101Follower, "configure", lambda self: None),
    ):
        yield bus


def test_robot_so101_drives_lerobots_so101_follower_with_a_mocked_bus_records_and_displays(tmp_path, monkeypatch):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from actlab.config.compose import compose_eval
    from actlab.deploy.cli import deploy

    pushed = []  # LeRobot's upload, faked: what would go to the hub
    monkeypatch.setattr(LeRobotDataset, "push_to_hub", lambda self, **kw: pushed.append((self.repo_id, self.root)))

    folder = so101_policy(tmp_path / "policy")
    overrides = [f"checkpoint={folder}", "robot=so101", "robot.port=/dev/null", f"robot.calibration_dir={tmp_path}",
                 "robot.keyboard=false", "robot.episode_time_s=null", "robot.reset_time_s=0", "control.frequency=10",
                 "control.max_steps=6", "control.episodes=2", f"control.record={tmp_path / 'rec'}",
                 "control.display=true", f"control.display_to={tmp_path / 'loop.rrd'}", "control.push_to_hub=true",
                 "control.repo_id=me/so101_run"]  # fmt: skip
    with mocked_feetech_bus() as bus:
        stats = deploy(compose_eval(overrides, tmp_path / "run", "deploy"))
    assert bus.connect.called and bus.disconnect.called and not bus.is_connected
    goals = [c for c in bus.sync_write.call_args_list if c.args[0] == "Goal_Position"]
    played = [json.loads(line) for line in (tmp_path / "run" / "deploy" / "episodes.jsonl").read_text().splitlines()]
    sent = sum(e["steps"] for e in played)
    assert len(played) == 2 and len(goals) == sent >= 4 and set(goals[0].args[1]) == set(MOTORS)  # by name
    assert stats["ticks"] <= 12

    assert pushed == [("me/so101_run", tmp_path / "rec")]
    dataset = LeRobotDataset("me/so101_run", root=tmp_path / "rec")
    assert dataset.meta.total_episodes == 2 and dataset.meta.total_frames == sent
    assert dataset.features["observation.state"]["names"] == NAMES
    assert dataset.features["action"]["names"] == NAMES
    np.testing.assert_array_equal(dataset[0]["observation.state"].numpy(), np.arange(1, 7, dtype=np.float32))
    assert (tmp_path / "loop.rrd").stat().st_size > 1000  # the rerun stream, saved
    meta = json.loads((tmp_path / "rec" / "meta" / "actlab.json").read_text())
    assert meta["checkpoint"] == str(folder) and len(meta["episodes"]) == 2


# ------------------------------------------------ a LeRobot-registered robot: Lift behind LeRobot's Robot
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def image_checkpoint(tmp_path_factory) -> Path:
    """The image quickstart (two 64x64 cameras, robot state) trained for two steps."""
    from tests.conftest import trained_checkpoint

    overrides = ["dataset.collect.workers=1", "env.eval_workers=1", "dataset.batch_size=4"]
    return trained_checkpoint(tmp_path_factory.mktemp("lift_image"), "quickstart_image", *overrides)


def deploy_plugin_robot(checkpoint: Path, tmp: Path, *overrides: str):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": f"{REPO / 'tests' / 'plugins'}:{REPO}", "PYTHONWARNINGS": "ignore"}
    args = [sys.executable, "-m", "actlab.deploy", f"checkpoint={checkpoint}", "robot=lerobot",
            "robot.type=actlab_lift_sim", "+robot.env=${env}", "robot.keyboard=false", "robot.episode_time_s=null",
            "robot.reset_time_s=0", "env.max_steps=15", "control.frequency=20", "control.clip=false",
            f"hydra.run.dir={tmp / 'deploy'}", *overrides]  # fmt: skip
    return subprocess.run(args, cwd=tmp, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_a_plugin_robot_plays_actlab_evals_episodes_records_them_and_the_recording_trains(tmp_path, image_checkpoint):
    from actlab.config.compose import compose_eval
    from actlab.eval.cli import evaluate
    from actlab.training.train import train
    from tests.conftest import FAST, compose_train

    evaluate(compose_eval([f"checkpoint={image_checkpoint}", "env.max_steps=15", "env.final_eval_episodes=3",
                           "eval.videos=0"], tmp_path / "eval"))  # fmt: skip
    expected = [json.loads(line) for line in (tmp_path / "eval" / "eval" / "episodes.jsonl").read_text().splitlines()]

    done = deploy_plugin_robot(image_checkpoint, tmp_path, "control.episodes=3", f"control.record={tmp_path / 'rec'}")
    assert done.returncode == 0, done.stderr[-3000:]
    played = [json.loads(line) for line in (tmp_path / "deploy" / "deploy" / "episodes.jsonl").read_text().splitlines()]
    assert [(e["success"], e["steps"]) for e in played] == [(e["success"], e["length"]) for e in expected]

    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    recorded = LeRobotDataset("local/rec", root=tmp_path / "rec", video_backend="pyav")
    assert recorded.meta.total_episodes == 3 and recorded.meta.total_frames == sum(e["steps"] for e in played)
    assert recorded.meta.fps == 20 and recorded.meta.robot_type == "actlab_lift_sim"
    assert set(recorded.meta.camera_keys) == {"observation.images.agentview", "observation.images.robot0_eye_in_hand"}
    assert recorded.features["observation.state"]["names"][0] == "robot0_eef_pos.0"
    frame = recorded[0]
    assert frame["observation.images.agentview"].shape == (3, 64, 64)

    cfg = compose_train(["dataset=lerobot", f"dataset.root={tmp_path / 'rec'}", "model=tiny", "env=none",
                         "encoder.pretrained=null", "trainer.max_steps=2", "dataset.batch_size=4",
                         "dataset.val_split=0", *FAST], tmp_path / "finetune")  # fmt: skip
    train(cfg)
    assert (Path(cfg.paths.output_dir) / "checkpoints" / "final").is_dir()


@pytest.mark.slow
def test_a_robot_that_fails_mid_episode_ends_the_run_in_one_line_and_keeps_the_recording(tmp_path, image_checkpoint):
    done = deploy_plugin_robot(image_checkpoint, tmp_path, "control.episodes=3", f"control.record={tmp_path / 'rec'}",
                               "+robot.fail_at_step=5")  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: robot.type=actlab_lift_sim: get_observation failed in episode 1 after 5 actions")
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    recorded = LeRobotDataset("local/rec", root=tmp_path / "rec", video_backend="pyav")
    assert recorded.meta.total_episodes == 2  # the first, and the second up to the failure
    assert recorded.meta.episodes[1]["length"] == 5
    assert json.loads((tmp_path / "deploy" / "deploy" / "stats.json").read_text())["ticks"] >= 20
    played = (tmp_path / "deploy" / "deploy" / "episodes.jsonl").read_text().splitlines()
    assert len(played) == 1  # the episode that ended before the failure
