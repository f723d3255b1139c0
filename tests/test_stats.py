"""Never train on non-finite statistics: a dataset's stats file with NaN, a string or a list of lists where
numbers belong is one line naming the file, the feature and the statistic; NaN in the data itself is one
line naming the dataset; a checkpoint whose normalisation buffers are not finite is refused at load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from actlab.config.datasets import LeRobotDatasetConfig, NpyDatasetConfig
from actlab.data.formats import load_store
from actlab.data.store import STD_FLOOR, EpisodeStore
from actlab.errors import ActlabError
from actlab.features import PolicyFeature
from actlab.policy import ACTPolicy
from tests.conftest import write_lerobot_dataset
from tests.formats import bimanual_frames, write_npy


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_lerobot_dataset(tmp_path_factory.mktemp("data") / "state", episodes=2, frames=8, env_state_dim=None)


def damaged(dataset: Path, tmp_path: Path, key: str, name: str, value) -> Path:
    root = tmp_path / "ds"
    shutil.copytree(dataset, root)
    stats = json.loads((root / "meta" / "stats.json").read_text())
    stats[key][name] = value
    (root / "meta" / "stats.json").write_text(json.dumps(stats))  # NaN as JSON's NaN, as Python writes it
    return root


def load(root: Path, tmp_path: Path):
    return load_store(LeRobotDatasetConfig(name="ds", root=str(root)), tmp_path / "cache")


@pytest.mark.parametrize(
    "key,name,value,message",
    [
        ("action", "mean", [float("nan")] * 5, r"the statistics of 'action' \(mean\) are not finite"),
        ("action", "std", [1.0, float("inf"), 1.0, 1.0, 1.0], r"the statistics of 'action' \(std\) are not finite"),
        ("observation.state", "min", [float("nan")] * 6, r"the statistics of 'observation.state' \(min\) are not"),
        ("action", "mean", "zero", "'action.mean' = 'zero' is not a number or a list of numbers"),
        ("action", "std", [[1.0, 2.0], [3.0]], r"'action.std' = '\[\[1.0, 2.0\], \[3.0\]\]' is not a number"),
        ("action", "max", {"x": 1}, "'action.max' = .* is not a number or a list of numbers"),
    ],
)
def test_bad_statistics_file_is_one_line_naming_file_and_key(dataset, tmp_path, key, name, value, message):
    root = damaged(dataset, tmp_path, key, name, value)
    with pytest.raises(ActlabError, match=message) as error:
        load(root, tmp_path)
    assert str(error.value).startswith(str(root / "meta" / "stats.json")) and "\n" not in str(error.value)


def test_nan_statistics_of_an_unused_key_do_not_matter(dataset, tmp_path):
    root = damaged(dataset, tmp_path, "timestamp", "mean", [float("nan")])
    assert np.isfinite(load(root, tmp_path).stats["action"]["mean"]).all()


def test_a_constant_dimension_is_left_unscaled(dataset, tmp_path):
    root = damaged(dataset, tmp_path, "action", "std", [0.0, 1e-9, 0.5, 0.5, 0.5])
    std = load(root, tmp_path).stats["action"]["std"]
    assert STD_FLOOR == 1e-6 and std.tolist() == [1.0, 1.0, 0.5, 0.5, 0.5]


def test_nan_in_the_data_itself_is_refused(tmp_path):
    data = bimanual_frames([6, 7])
    data["actions"][3, 2] = np.nan
    root = write_npy(tmp_path / "npy", "folder", [6, 7], data)
    with pytest.raises(ActlabError, match=r"actions.npy: 'actions' holds NaN or Inf \(first at frame 3\)"):
        load_store(NpyDatasetConfig(name="npy", root=str(root)), tmp_path / "cache")


def test_a_store_never_holds_non_finite_statistics():
    """Whatever reader builds it: statistics computed from NaN data, or given, are refused."""
    actions = np.zeros((4, 2), dtype=np.float32)
    actions[1, 0] = np.nan
    store = dict(
        name="x",
        fps=10.0,
        features={"action": PolicyFeature("ACTION", (2,))},
        arrays={"action": actions},
        episode_starts=np.array([0]),
        episode_ends=np.array([4]),
    )
    with pytest.raises(ActlabError, match=r"dataset x: the statistics of 'action' \(mean\) are not finite"):
        EpisodeStore(**store)
    given = {"action": {"mean": np.zeros(2), "std": np.array([1.0, np.inf])}}
    with pytest.raises(ActlabError, match=r"dataset x: the statistics of 'action' \(std\) are not finite"):
        EpisodeStore(**{**store, "arrays": {"action": np.zeros((4, 2), np.float32)}, "stats": given})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from actlab.config.policy import ACTPolicyConfig

    config = ACTPolicyConfig(
        input_features={"observation.state": {"type": "STATE", "shape": [3]}},
        output_features={"action": {"type": "ACTION", "shape": [2]}},
        encoder={"name": "resnet18", "pretrained": None},
        chunk_size=4,
        n_action_steps=4,
        dim_model=16,
        n_heads=2,
        dim_feedforward=32,
        n_encoder_layers=1,
        n_vae_encoder_layers=1,
        latent_dim=4,
    )
    stats = {k: {"mean": np.zeros(n), "std": np.ones(n)} for k, n in (("observation.state", 3), ("action", 2))}
    folder = tmp_path_factory.mktemp("ckpt") / "policy"
    ACTPolicy(config, stats, load_backbone_weights=False).save_pretrained(folder)
    return folder


def test_a_checkpoint_with_finite_buffers_loads(checkpoint):
    assert isinstance(ACTPolicy.from_pretrained(checkpoint), ACTPolicy)


@pytest.mark.parametrize("buffer", ["normalizer.stats.action.std", "normalizer.stats.observation__state.mean"])
def test_a_checkpoint_with_non_finite_statistics_is_refused(checkpoint, tmp_path, buffer):
    folder = tmp_path / "policy"
    shutil.copytree(checkpoint, folder)
    weights = load_file(folder / "model.safetensors")
    name = next(k for k in weights if k.replace("__", ".") == buffer.replace("__", "."))
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, folder / "model.safetensors")
    key, stat = buffer.removeprefix("normalizer.stats.").replace("__", ".").rsplit(".", 1)
    with pytest.raises(ActlabError, match=rf"the normalisation statistics '{key}.{stat}' are not finite") as error:
        ACTPolicy.from_pretrained(folder)
    assert str(error.value).startswith(str(folder / "model.safetensors")) and "\n" not in str(error.value)


@pytest.mark.parametrize("value", [[1.0, 2.0], "mean", None])
def test_a_feature_whose_statistics_are_not_a_map_is_one_line(dataset, tmp_path, value):
    root = damaged(dataset, tmp_path, "action", "mean", 0.0)
    stats = json.loads((root / "meta" / "stats.json").read_text())
    stats["action"] = value
    (root / "meta" / "stats.json").write_text(json.dumps(stats))
    with pytest.raises(ActlabError) as error:
        load(root, tmp_path)
    message = str(error.value)
    assert message.startswith(str(root / "meta" / "stats.json")) and "'action'" in message and "\n" not in message
