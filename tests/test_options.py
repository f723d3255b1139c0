"""One typed schema per config-group option: a key of another option fails at compose time, every option's
name has its implementation, and what older versions saved with every key of every option (a policy's
config.json, a run's hyperparameters.json) still loads."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from actlab.config.compose import compose_eval
from actlab.config.datasets import DemosDatasetConfig, NpyDatasetConfig, dataset_formats
from actlab.config.encoders import ClipEncoderConfig, Pri3dEncoderConfig, ResNet18EncoderConfig
from actlab.config.envs import ALOHA_TASKS, AlohaEnvConfig, RobosuiteEnvConfig
from actlab.config.options import SCHEMAS
from actlab.config.policy import ACTPolicyConfig
from actlab.errors import ActlabError
from actlab.features import PolicyFeature
from tests.conftest import compose_train


@pytest.mark.parametrize(
    "overrides,line",
    [
        (["encoder=resnet18", "encoder.model_name=ViT-L-14"], "Key 'model_name' not in 'ResNet18EncoderConfig'"),
        (["encoder=resnet18", "encoder.depth=50"], "Key 'depth' not in 'ResNet18EncoderConfig'"),
        (["encoder=clip", "encoder.norm=group_norm"], "Key 'norm' not in 'ClipEncoderConfig'"),
        (["dataset=lerobot", "dataset.allow_pickle=true"], "Key 'allow_pickle' not in 'LeRobotDatasetConfig'"),
        (["dataset=lerobot", "dataset.fps=7"], "Key 'fps' not in 'LeRobotDatasetConfig'"),
        (["dataset=npy", "dataset.cameras=[top]"], "Key 'cameras' not in 'NpyDatasetConfig'"),
        (["env=aloha", "env.robot=Sawyer"], "Key 'robot' not in 'AlohaEnvConfig'"),
        (["env=none", "env.task=Lift"], "Key 'task' not in 'NoEnvConfig'"),
    ],
)
def test_a_key_of_another_option_fails_at_compose_time_naming_it(tmp_path, overrides, line):
    with pytest.raises(ConfigCompositionException) as e:
        compose_train(overrides, tmp_path)
    assert line in str(e.value.__cause__).splitlines()


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["dataset.format=npy"], r"^dataset.format=npy does not fit the keys of dataset=lerobot \(LeRobotDataset"),
        (["env=lift", "env.type=aloha"], r"^env.type=aloha does not fit the keys of env=lift \(RobosuiteEnvConfig\)"),
        (["encoder.name=clip"], r"^encoder.name=clip does not fit the keys of ResNet18EncoderConfig; choose encoder="),
        (["encoder=pri3d", "encoder.depth=152"], r"^encoder.depth=152; expected one of \[18, 34, 50, 101\]$"),
        (["encoder=clip", "encoder.pretrained=imagenet"], r"^encoder.pretrained='imagenet'; expected 'openai' or null"),
        (["env=aloha", "env.control_freq=20"], r"^env.control_freq=20: the ALOHA simulation runs at 50 Hz"),
        (["env=aloha", "env.cameras=[wrist]"], r"^env.cameras: \['wrist'\] are not cameras of the ALOHA scene"),
        (["env=lift", "env.image_size=[64]"], r"^env.image_size=\[64\]: expected \[height, width\], two positive"),
        (["env=lift", "env.task=null"], r"^env.task is required for a robosuite env \(e.g. Lift\)$"),
    ],
)  # fmt: skip
def test_each_options_ranges_are_checked_at_compose_time(tmp_path, overrides, message):
    with pytest.raises(ActlabError, match=message):
        compose_train(overrides, tmp_path)


def test_every_option_schema_has_its_implementation():
    from actlab.data.formats import FORMATS
    from actlab.policy.encoders import BACKBONES
    from actlab.sim.aloha import TASKS
    from actlab.sim.envs import ENVS

    assert set(SCHEMAS["encoder"]) == set(BACKBONES)
    assert set(dataset_formats()) == set(FORMATS)
    assert set(SCHEMAS["env"]) == {"none", *ENVS}
    assert set(ALOHA_TASKS) == set(TASKS)


# ------------------------------------------------------------------------------- what older versions saved
# The single encoder schema of older versions: every key of every encoder, in every config.json.
FLAT_ENCODER = {
    "name": "resnet18", "pretrained": None, "weights": None, "freeze": False, "fuse": "none", "model_name": None,
    "depth": None, "replace_final_stride_with_dilation": False, "norm": "frozen_batch_norm", "feature_layer": "layer4",
}  # fmt: skip


def policy_config(encoder: dict) -> dict:
    features = {
        "observation.state": PolicyFeature("STATE", (3,)),
        "observation.images.top": PolicyFeature("VISUAL", (3, 8, 8)),
    }
    config = ACTPolicyConfig(input_features=features, output_features={"action": PolicyFeature("ACTION", (2,))})
    return {**config.to_dict(), "encoder": encoder}


@pytest.mark.parametrize(
    "flat,expected",
    [
        ({"norm": "group_norm"}, ResNet18EncoderConfig(pretrained=None, norm="group_norm")),
        (
            {"name": "clip", "model_name": "ViT-B-16", "fuse": "mean"},
            ClipEncoderConfig(pretrained=None, freeze=False, model_name="ViT-B-16"),
        ),
        (
            {"name": "pri3d", "depth": 18, "feature_layer": "layer3"},
            Pri3dEncoderConfig(pretrained=None, depth=18, feature_layer="layer3"),
        ),
    ],
)  # fmt: skip
def test_a_flat_encoder_dict_of_an_older_config_json_still_loads(tmp_path, flat, expected):
    (tmp_path / "config.json").write_text(json.dumps(policy_config({**FLAT_ENCODER, **flat})))
    config = ACTPolicyConfig.load(tmp_path / "config.json")
    assert config.encoder == expected
    assert config.to_dict()["encoder"] == asdict(expected)  # written back as plain JSON, its own keys only


def test_a_real_value_for_another_encoders_key_in_config_json_is_one_line(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(policy_config({**FLAT_ENCODER, "depth": 50})))
    with pytest.raises(ActlabError) as e:
        ACTPolicyConfig.load(path)
    assert str(e.value) == (
        f"{path}: encoder.depth=50 is not a setting of encoder=resnet18 (ResNet18EncoderConfig has ['feature_layer', "
        "'freeze', 'fuse', 'name', 'norm', 'pretrained', 'replace_final_stride_with_dilation', 'weights'])"
    )


def old_run(folder: Path, dataset: dict, env: dict) -> Path:
    """A checkpoint folder whose hyperparameters.json an older version wrote (flat groups)."""
    folder.mkdir(parents=True)
    (folder / "hyperparameters.json").write_text(
        json.dumps(
            {
                "seed": 7,
                "model": {"name": "tiny", "chunk_size": 20, "n_action_steps": 10, "dim_model": 128, "n_heads": 4},
                "encoder": {**FLAT_ENCODER, "norm": "group_norm"},
                "dataset": {
                    "name": "x",
                    "format": "lerobot",
                    "root": None,
                    "repo_id": None,
                    "cameras": None,
                    "batch_size": 8,
                    "num_workers": 0,
                    "val_split": 0.2,
                    "collect": None,
                    "fps": 30.0,
                    "allow_pickle": False,
                    "camera_map": None,
                    "state_key": "state",
                    **dataset,
                },
                "env": {
                    "name": "none",
                    "type": "none",
                    "task": None,
                    "robot": "Panda",
                    "control_freq": 20,
                    "cameras": [],
                    "image_size": [96, 96],
                    "state_keys": [],
                    "env_state_keys": [],
                    "reward_shaping": True,
                    "eval_freq": 0,
                    "eval_episodes": 10,
                    "final_eval_episodes": 10,
                    "eval_workers": 1,
                    "max_steps": 400,
                    "seed": 100000,
                    "video_episodes": 0,
                    "video_camera": None,
                    "video_size": [240, 320],
                    **env,
                },
                "policy": {"precision": "fp32", "compile": False},
                "paths": {"data_dir": "/data", "cache_dir": "/data/.cache", "output_dir": "/runs/x"},
            }
        )  # fmt: skip
    )
    return folder


@pytest.mark.parametrize("command", ["eval", "serve", "deploy"])
def test_checkpoint_run_of_an_older_hyperparameters_json_composes_typed(tmp_path, command):
    lift = {"name": "lift", "type": "robosuite", "task": "Lift", "state_keys": ["robot0_eef_pos"]}
    collect = {"episodes": 3, "seed": 0, "max_steps": 50, "action_noise": 0.0, "video": False, "workers": 1}
    folder = old_run(tmp_path / "ckpt", {"name": "lift", "collect": collect}, lift)
    cfg = compose_eval([f"checkpoint={folder}"], tmp_path / "out", command)
    assert OmegaConf.get_type(cfg.encoder) is ResNet18EncoderConfig and cfg.encoder.norm == "group_norm"
    assert OmegaConf.get_type(cfg.dataset) is DemosDatasetConfig and cfg.dataset.collect.episodes == 3
    assert "fps" not in cfg.dataset and cfg.dataset.val_split == 0.2
    assert OmegaConf.get_type(cfg.env) is RobosuiteEnvConfig and list(cfg.env.state_keys) == ["robot0_eef_pos"]
    assert (cfg.seed, cfg.model.chunk_size, cfg.paths.data_dir) == (7, 20, "/data")


def test_checkpoint_run_takes_each_groups_schema_from_the_saved_run(tmp_path):
    aloha = {"name": "aloha", "type": "aloha", "task": "insertion", "robot": "aloha", "control_freq": 50}
    npy = {"name": "g1_npy", "format": "npy", "fps": 15.0, "allow_pickle": True, "root": "/data/g1"}
    folder = old_run(tmp_path / "ckpt", npy, aloha)
    cfg = compose_eval([f"checkpoint={folder}"], tmp_path / "out")
    assert OmegaConf.get_type(cfg.env) is AlohaEnvConfig and cfg.env.task == "insertion" and "robot" not in cfg.env
    assert OmegaConf.get_type(cfg.dataset) is NpyDatasetConfig and (cfg.dataset.fps, cfg.dataset.allow_pickle) == (
        15,
        True,
    )
    # another option of a group replaces the checkpoint's, whatever its schema
    cfg = compose_eval([f"checkpoint={folder}", "env=lift", "dataset=lerobot", "dataset.root=/d"], tmp_path / "o2")
    assert (OmegaConf.get_type(cfg.env), cfg.env.task, cfg.dataset.root) == (RobosuiteEnvConfig, "Lift", "/d")
    with pytest.raises(ConfigCompositionException):
        compose_eval([f"checkpoint={folder}", "env.state_keys=[x]"], tmp_path / "o3")  # not an ALOHA key
