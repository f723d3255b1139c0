"""ALOHA simulation (env=aloha): the adapter against gym-aloha, the scripted experts, the paper's experiment at
a CPU size, LeRobot's ALOHA feature names, and a bad task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from actlab.policy import ACTPolicy
from actlab.sim.collect import EXPERTS, record_episode
from actlab.sim.envs import make_env
from actlab.training.train import train
from tests.conftest import FAST, REPO, compose_train, run_cli, write_lerobot_dataset

START = [0.0, -0.96, 1.16, 0.0, -0.3, 0.0]  # gym-aloha's START_ARM_POSE, per arm
PAPER = dict(
    chunk_size=100, n_action_steps=1, temporal_ensemble_coeff=0.01, dim_model=512, n_heads=8, dim_feedforward=3200,
    n_encoder_layers=4, n_decoder_layers=1, latent_dim=32, kl_weight=10.0,
)  # fmt: skip
TINY = [
    "model.chunk_size=10",
    "model.dim_model=32",
    "model.n_heads=2",
    "model.dim_feedforward=64",
    "model.n_encoder_layers=1",
    "model.n_vae_encoder_layers=1",
    "model.latent_dim=8",
    "encoder.pretrained=null",
    "hardware=cpu",
    "dataset.batch_size=2",
    "trainer.max_steps=2",
    "env.eval_freq=0",
    "env.final_eval_episodes=1",
    "env.max_steps=20",
]


def aloha_env(task: str = "transfer_cube", **changes):
    cfg = OmegaConf.load(REPO / "conf" / "env" / "aloha.yaml")
    cfg.task = task
    for key, value in changes.items():
        cfg[key] = value
    return cfg


@pytest.mark.slow
def test_adapter_speaks_the_batch_convention_and_matches_gym_aloha():
    env = make_env(aloha_env(image_size=[48, 64], cameras=["top", "angle"]), video=True)
    try:
        assert env.fps == 50.0
        assert {k: (f.type, f.shape) for k, f in env.features.items()} == {
            "observation.images.top": ("VISUAL", (3, 48, 64)),
            "observation.images.angle": ("VISUAL", (3, 48, 64)),
            "observation.state": ("STATE", (14,)),
            "action": ("ACTION", (14,)),
        }
        obs = env.reset(seed=3)
        assert {k: (v.shape, v.dtype) for k, v in obs.items()} == {
            "observation.images.top": ((48, 64, 3), np.uint8),
            "observation.images.angle": ((48, 64, 3), np.uint8),
            "observation.state": ((14,), np.float32),
        }
        state = obs["observation.state"]
        np.testing.assert_allclose(state[[0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12]], START * 2, atol=1e-6)
        top = obs["observation.images.top"]
        red = (top[..., 0] > 150) & (top[..., 1] < 60) & (top[..., 2] < 60)
        assert red.sum() > 0  # the cube is in view

        # Seeded resets are reproducible (object placement included); another seed places the cube elsewhere.
        again = env.reset(seed=3)
        for key in obs:
            np.testing.assert_array_equal(again[key], obs[key])
        other = env.reset(seed=4)
        assert not np.array_equal(other["observation.images.top"], top)

        # Observations are copies: stepping (arms moving) changes the new image, not the earlier one.
        env.reset(seed=3)
        action = state.astype(np.float64).copy()
        action[[1, 8]] += 0.5  # both shoulders forward
        for _ in range(10):
            moved, reward, success = env.step(action)
        np.testing.assert_array_equal(obs["observation.images.top"], top)
        assert not np.array_equal(moved["observation.images.top"], top)
        assert isinstance(reward, float) and reward == 0.0 and success is False
        assert env.render().shape == (480, 640, 3)
    finally:
        env.close()

    # The same seed and actions give what gym-aloha's own gymnasium env gives (state and the 480x640 image).
    from gym_aloha.env import AlohaEnv as GymAloha

    env = make_env(aloha_env(image_size=[480, 640]))
    gym_env = GymAloha("transfer_cube", obs_type="pixels_agent_pos")
    try:
        mine, (theirs, _) = env.reset(seed=3), gym_env.reset(seed=3)
        for _ in range(3):
            mine, reward, _ = env.step(action)
            theirs, gym_reward, *_ = gym_env.step(action)
        np.testing.assert_allclose(mine["observation.state"], theirs["agent_pos"], atol=1e-6)
        np.testing.assert_array_equal(mine["observation.images.top"], theirs["pixels"]["top"])
        assert reward == gym_reward
    finally:
        env.close()


@pytest.mark.slow
@pytest.mark.parametrize("task", ["transfer_cube", "insertion"])
def test_scripted_expert_succeeds(task):
    # Without cameras: rendering would take most of the time; the experiment test below records images.
    env = make_env(aloha_env(task, cameras=[]))
    expert = EXPERTS[task]()
    collect = OmegaConf.create({"max_steps": 400, "action_noise": 0.0})
    try:
        for seed in (0, 1):
            frames = record_episode(env, expert, collect, seed, np.random.default_rng(0))
            assert frames is not None, f"{task}: the scripted expert failed seed {seed}"
            actions = np.stack([f["action"] for f in frames])
            assert actions.shape[1] == 14 and 150 < len(frames) < 400
            np.testing.assert_allclose(actions[0, :6], START, atol=0.05)  # starts where the arms are
            assert actions[:, [6, 13]].min() >= 0.0 and actions[:, [6, 13]].max() == 1.0  # grippers opened
            np.testing.assert_array_equal(frames[0]["observation.state"], env.reset(seed)["observation.state"])
    finally:
        env.close()


def test_experiment_is_the_papers_recipe(tmp_path):
    cfg = compose_train(["experiment=aloha_transfer_cube"], tmp_path)
    model = {k: cfg.model[k] for k in PAPER}
    assert model == PAPER and cfg.model.scheduler.warmup_steps == 0
    assert dict(cfg.model.optimizer) == {"lr": 1e-5, "lr_backbone": 1e-5, "weight_decay": 1e-4}
    assert (cfg.dataset.batch_size, cfg.trainer.max_steps, cfg.trainer.precision) == (8, 100_000, "32-true")
    assert (cfg.encoder.name, cfg.encoder.pretrained, cfg.trainer.accelerator) == ("resnet18", "imagenet", "gpu")
    assert (cfg.env.task, list(cfg.env.cameras), list(cfg.env.image_size)) == ("transfer_cube", ["top"], [480, 640])
    assert (cfg.env.max_steps, cfg.env.control_freq, cfg.dataset.collect.episodes) == (400, 50, 50)
    # LeRobot's human demonstrations instead of the scripted ones: the dataset group is replaced.
    cfg = compose_train(["experiment=aloha_transfer_cube", "dataset=lerobot", "dataset.root=/data/aloha"], tmp_path)
    assert "collect" not in cfg.dataset and cfg.dataset.root == "/data/aloha"  # (a lerobot dataset has no collect)


@pytest.mark.slow
def test_paper_experiment_at_cpu_size_collects_trains_and_evaluates(tmp_path):
    cfg = compose_train(
        ["experiment=aloha_transfer_cube", "model=tiny", "dataset.collect.episodes=2", "env.image_size=[64,64]"]
        + [*TINY, *FAST],
        tmp_path,
    )
    assert cfg.model.temporal_ensemble_coeff == 0.01 and cfg.model.n_action_steps == 1
    metrics = train(cfg)
    assert {"eval/success_rate", "eval/avg_reward", "eval/avg_length"} <= set(metrics)
    (data,) = (tmp_path / "data").glob("transfer_cube_top_64x64_2ep_*")
    info = json.loads((data / "meta" / "info.json").read_text())
    assert info["fps"] == 50 and info["total_episodes"] == 2 and info["robot_type"] == "aloha"
    assert 2 * 150 < info["total_frames"] < 2 * 400  # each episode ends 10 frames after the transfer
    assert {k: info["features"][k]["shape"] for k in ("observation.state", "action")} == {
        "observation.state": [14],
        "action": [14],
    }
    assert info["features"]["observation.images.top"]["dtype"] == "video"
    run = Path(cfg.paths.output_dir)
    final = json.loads((run / "eval" / "final_metrics.json").read_text())
    assert final["episodes"] == 1 and final["avg_length"] <= 20
    policy = ACTPolicy.from_pretrained(run / "checkpoints" / "final")
    assert policy.config.temporal_ensemble_coeff == 0.01 and list(policy.config.image_features) == [
        "observation.images.top"
    ]


@pytest.mark.slow
def test_lerobot_aloha_dataset_trains_against_the_sim_without_renames(tmp_path):
    # lerobot/aloha_sim_transfer_cube_human's features (observation.images.top video, 14-D state and action,
    # 50 fps) at a small image size.
    root = write_lerobot_dataset(
        tmp_path / "aloha_sim_transfer_cube_human",
        episodes=2,
        frames=12,
        cameras=("top",),
        image_hw=(48, 64),
        state_dim=14,
        action_dim=14,
        env_state_dim=None,
        fps=50,
    )
    cfg = compose_train(
        ["dataset=lerobot", f"dataset.root={root}", "env=aloha", "env.image_size=[48,64]", "model=tiny", *TINY, *FAST],
        tmp_path,
    )
    metrics = train(cfg)
    assert metrics["eval/avg_length"] <= 20
    final = json.loads((Path(cfg.paths.output_dir) / "eval" / "final_metrics.json").read_text())
    assert final["episodes"] == 1


def test_unknown_task_is_one_line(tmp_path):
    result = run_cli(["env=aloha", "env.task=pick_place", "model=tiny"], tmp_path)
    assert result.returncode == 2, result.stderr
    expected = "error: env.task='pick_place' is not an ALOHA task; expected one of ['insertion', 'transfer_cube']"
    assert result.stderr.strip().splitlines() == [expected]
    assert not (tmp_path / "outputs").exists()
