"""robosuite Lift end to end: scripted demonstrations into a LeRobot dataset, training, rollouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from actlab.config.envs import RobosuiteEnvConfig
from actlab.policy import ACTPolicy
from actlab.sim.envs import make_env
from actlab.training.train import train
from tests.conftest import FAST, compose_train

pytestmark = pytest.mark.slow

LIFT = dict(
    name="lift",
    type="robosuite",
    task="Lift",
    robot="Panda",
    max_steps=60,
    state_keys=["robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"],
    env_state_keys=["cube_pos", "cube_quat"],
)


def test_lift_adapter_speaks_the_batch_convention():
    env = make_env(RobosuiteEnvConfig(**LIFT, cameras=["agentview"], image_size=[48, 64]))
    try:
        obs = env.reset(seed=0)
        assert {k: v.shape for k, v in obs.items()} == {
            "observation.state": (9,),
            "observation.environment_state": (7,),
            "observation.images.agentview": (48, 64, 3),
        }
        assert env.features["action"].shape == (7,) and env.features["observation.images.agentview"].shape == (
            3,
            48,
            64,
        )
        image = obs["observation.images.agentview"]
        # OpenCV convention: the table (bright) fills the bottom of the agentview image, not the top.
        assert image[-8:].mean() > image[:8].mean()
        again = env.reset(seed=0)
        np.testing.assert_allclose(again["observation.environment_state"], obs["observation.environment_state"])
        _, reward, success = env.step(np.zeros(7))
        assert isinstance(reward, float) and success is False
    finally:
        env.close()


def test_reflections_off_renders_the_scene_without_them_and_names_another_dataset(tmp_path):
    """env.reflections=false (the image quickstart's) turns MuJoCo's reflections off in the camera renderer,
    after every reset too; the demonstrations folder of the default (on) is the one it was before the key."""
    import mujoco

    from actlab.sim.collect import demonstrations_dirname

    images = {}
    for on in (True, False):
        env = make_env(RobosuiteEnvConfig(**LIFT, cameras=["agentview"], image_size=[32, 32], reflections=on))
        try:
            env.reset(seed=3)
            scene = env.env.sim._render_context_offscreen.scn
            assert scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] == int(on)
            images[on] = env.reset(seed=3)["observation.images.agentview"].astype(int)
        finally:
            env.close()
    difference = np.abs(images[True] - images[False]).mean()
    assert 0 < difference < 5  # the same scene, without the mirror images
    default = compose_train(["experiment=quickstart_image", "env.reflections=true"], tmp_path / "a")
    off = compose_train(["experiment=quickstart_image"], tmp_path / "b")
    # the folder name of the image quickstart's demonstrations before env.reflections existed
    assert demonstrations_dirname(default.env, default.dataset.collect).endswith("_100ep_a639eb68")
    assert demonstrations_dirname(off.env, off.dataset.collect) != demonstrations_dirname(
        default.env, default.dataset.collect
    )


def quickstart(tmp_path: Path, *overrides: str, experiment: str = "quickstart") -> Path:
    cfg = compose_train(
        [
            f"experiment={experiment}",
            "dataset.collect.episodes=2",
            "trainer.max_steps=4",
            "checkpoint.save_freq=2",
            "env.eval_freq=2",
            "env.eval_episodes=1",
            "env.final_eval_episodes=2",
            "env.max_steps=30",
            "dataset.batch_size=8",
            *FAST,
            *overrides,
        ],
        tmp_path,
    )
    metrics = train(cfg)
    assert {"eval/success_rate", "eval/avg_reward", "eval/avg_length"} <= set(metrics)
    return Path(cfg.paths.output_dir)


def test_quickstart_collects_trains_and_evaluates(tmp_path):
    run_dir = quickstart(tmp_path)
    datasets = list((tmp_path / "data").glob("lift_state_2ep_*"))
    assert len(datasets) == 1  # LeRobot v3.0 dataset written by LeRobot's writer
    info = json.loads((datasets[0] / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_episodes"] == 2 and info["fps"] == 20
    assert set(info["features"]) >= {"observation.state", "observation.environment_state", "action"}
    final = json.loads((run_dir / "eval" / "final_metrics.json").read_text())
    assert final["episodes"] == 2 and 0 <= final["success_rate"] <= 1 and final["avg_length"] <= 30
    assert (run_dir / "checkpoints" / "best").is_dir()  # kept by eval/success_rate
    rows = (run_dir / "csv" / "metrics.csv").read_text()
    assert "eval/success_rate" in rows and "eval/final_success_rate" in rows
    # A second run reuses the collected dataset.
    mtime = (datasets[0] / "meta" / "info.json").stat().st_mtime_ns
    quickstart(
        tmp_path / "again",
        f"paths.data_dir={tmp_path / 'data'}",
        "trainer.max_steps=1",
        "env.eval_freq=0",
        "env.final_eval_episodes=1",
    )
    assert (datasets[0] / "meta" / "info.json").stat().st_mtime_ns == mtime


def test_image_quickstart_trains_from_cameras_without_the_cube_pose(tmp_path):
    run_dir = quickstart(tmp_path, "env.image_size=[32,32]", "env.final_eval_episodes=1", experiment="quickstart_image")
    policy = ACTPolicy.from_pretrained(run_dir / "checkpoints" / "final")
    assert set(policy.config.input_features) == {
        "observation.state",
        "observation.images.agentview",
        "observation.images.robot0_eye_in_hand",
    }
    assert policy.config.input_features["observation.images.agentview"].shape == (3, 32, 32)
    (dataset,) = (tmp_path / "data").glob("lift_agentview-robot0_eye_in_hand_32x32_2ep_*")
    info = json.loads((dataset / "meta" / "info.json").read_text())
    assert "observation.environment_state" not in info["features"]
    # stored losslessly: trained on exactly the pixels the rollouts render
    assert info["features"]["observation.images.agentview"]["dtype"] == "image" and not (dataset / "videos").exists()
    assert policy.config.encoder.norm == "group_norm" and policy.config.encoder.pretrained is None


def test_without_a_final_evaluation_the_last_rollouts_are_the_sweepers_metric(tmp_path):
    # experiment=quickstart sets optimized_metric=eval/success_rate; the in-training rollouts provide it.
    run_dir = quickstart(tmp_path, "env.final_eval_episodes=0")
    assert not (run_dir / "eval" / "final_metrics.json").exists()


def test_in_training_evaluations_record_videos_and_log_them(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from actlab.sim.video import read_frames

    run_dir = quickstart(tmp_path, "env.video_episodes=1", "logger=tensorboard", "env.max_steps=10")
    videos = sorted(p.relative_to(run_dir / "eval" / "videos") for p in (run_dir / "eval" / "videos").rglob("*.mp4"))
    assert [str(v) for v in videos] == ["final/episode_000.mp4", "step_2/episode_000.mp4", "step_4/episode_000.mp4"]
    assert read_frames(run_dir / "eval" / "videos" / "step_2" / "episode_000.mp4").shape == (11, 240, 320, 3)
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert {"eval/videos/episode_000", "eval/final_videos/episode_000"} <= set(events.Tags()["images"])
    assert [e.step for e in events.Images("eval/videos/episode_000")] == [2, 4]


def test_recorder_processes_write_the_same_dataset_as_one_process(tmp_path):
    import pandas as pd

    from actlab.config.datasets import DemoCollectionConfig
    from actlab.sim.collect import ensure_demonstrations

    env = RobosuiteEnvConfig(**LIFT, cameras=["agentview"], image_size=[16, 16])
    roots = []
    for workers in (1, 2):
        collect = DemoCollectionConfig(episodes=3, action_noise=0.1, video=False, workers=workers)
        roots.append(ensure_demonstrations(env, collect, tmp_path / f"data_{workers}"))
    assert roots[0].name == roots[1].name  # the number of processes is not part of the dataset's identity
    one, two = (pd.read_parquet(root / "data" / "chunk-000" / "file-000.parquet") for root in roots)
    assert one["episode_index"].nunique() == 3 and len(one) == len(two)
    for column in ("observation.state", "action", "episode_index", "frame_index"):
        np.testing.assert_array_equal(np.stack(one[column]), np.stack(two[column]))
    pixels = [[frame["bytes"] for frame in table["observation.images.agentview"]] for table in (one, two)]
    assert pixels[0] == pixels[1]


def test_training_evaluations_in_worker_processes_match_in_process_ones(tmp_path):
    from actlab.sim.runner import SimRunner

    run_dir = quickstart(tmp_path, "env.eval_workers=2", "env.eval_freq=0", "env.final_eval_episodes=3")
    final = json.loads((run_dir / "eval" / "final_metrics.json").read_text())
    policy = ACTPolicy.from_pretrained(run_dir / "checkpoints" / "final")
    runner = SimRunner(RobosuiteEnvConfig(**{**LIFT, "max_steps": 30}), 3, 30, final["seed"])
    try:
        here = runner.run(policy)
    finally:
        runner.close()
    assert final["success_rate"] == here["success_rate"] and final["avg_length"] == here["avg_length"]
    assert final["avg_reward"] == pytest.approx(here["avg_reward"], rel=1e-4)
