"""Several datasets with the same features trained on as one (`dataset.root=[a,b]`): the union keeps the
episodes apart, has statistics over all frames, samples by `dataset.weights`, refuses datasets that differ
with one line, and fine-tunes (`init_from=`) and resumes like a single dataset."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from actlab.config.datasets import LeRobotDatasetConfig
from actlab.data.datamodule import ACTDataModule, frame_probabilities
from actlab.data.formats import load_store
from actlab.data.store import EpisodeStore, compute_stats
from actlab.data.union import ConcatFrames, UnionStore, union
from actlab.data.windows import ChunkWindows, StepBatches
from actlab.errors import ActlabError
from actlab.features import PolicyFeature
from actlab.training.train import train
from tests.conftest import FAST, compose_train, write_lerobot_dataset


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> tuple[Path, Path]:
    """Two small png datasets with the same features: 3 episodes of 12 frames, 2 of 8."""
    base = tmp_path_factory.mktemp("multi")
    common = dict(cameras=("front",), video=False, image_hw=(16, 16))
    return (
        write_lerobot_dataset(base / "demos", episodes=3, frames=12, seed=1, **common),
        write_lerobot_dataset(base / "recorded", episodes=2, frames=8, seed=2, **common),
    )


def load(root, tmp_path, **kw) -> EpisodeStore:
    root = [str(r) for r in root] if isinstance(root, (list, tuple)) else str(root)
    return load_store(LeRobotDatasetConfig(name="test", root=root, **kw), tmp_path / "cache")


def memory_store(name: str, lengths: list[int], seed: int, hw=(4, 5), fps: float = 10.0, **changes) -> EpisodeStore:
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    features = {
        "observation.state": PolicyFeature("STATE", (3,)),
        "observation.images.front": PolicyFeature("VISUAL", (3, *hw)),
        "action": PolicyFeature("ACTION", (2,)),
    }
    features.update(changes.pop("features", {}))
    arrays = {
        "observation.state": rng.normal(size=(n, 3)).astype(np.float32) + 10 * seed,
        "observation.images.front": rng.integers(0, 256, (n, *hw, 3), dtype=np.uint8),
        "action": rng.normal(size=(n, 2)).astype(np.float32) * (1 + seed),
    }
    for key, f in features.items():
        if key not in arrays:
            arrays[key] = rng.normal(size=(n, *f.shape)).astype(np.float32)
    ends = np.cumsum(lengths)
    return EpisodeStore(
        name=name,
        fps=fps,
        features=features,
        arrays=arrays,
        episode_starts=ends - np.asarray(lengths),
        episode_ends=ends,
        root=Path(f"/data/{name}"),
        names=changes.pop("names", {"action": ["x", "y"]}),
    )


# --------------------------------------------------------------------------------------------- the union
def test_union_keeps_every_frame_and_episode_in_order(two, tmp_path):
    a, b = load(two[0], tmp_path), load(two[1], tmp_path)
    both = load(two, tmp_path)
    assert isinstance(both, UnionStore) and both.parts == both.datasets and len(both.parts) == 2
    assert (both.num_episodes, both.num_frames, both.fps) == (5, 52, 10)
    assert both.episode_starts.tolist() == [0, 12, 24, 36, 44]
    for key in both.features:
        np.testing.assert_array_equal(np.asarray(both.arrays[key][: a.num_frames]), np.asarray(a.arrays[key]))
        np.testing.assert_array_equal(np.asarray(both.arrays[key][a.num_frames :]), np.asarray(b.arrays[key]))
    assert both.frame_datasets().tolist() == [0] * 36 + [1] * 16


def test_action_chunks_never_cross_from_one_dataset_into_the_next(two, tmp_path):
    a = load(two[0], tmp_path)
    both = load(two, tmp_path)
    last = a.num_frames - 1  # the last frame of the first dataset
    batch = ChunkWindows(both, np.array([last]), chunk_size=4).__getitems__([0])
    assert batch["action_is_pad"][0].tolist() == [False, True, True, True]
    np.testing.assert_array_equal(batch["action"][0].numpy(), np.repeat(a.arrays["action"][last:], 4, axis=0))


def test_statistics_are_those_of_the_concatenation():
    stores = [memory_store("a", [6, 9], seed=0), memory_store("b", [4], seed=3), memory_store("c", [5, 5], seed=5)]
    joined = union(stores)
    flat = EpisodeStore(
        name="flat",
        fps=10.0,
        features=stores[0].features,
        arrays={k: np.concatenate([s.arrays[k] for s in stores]) for k in stores[0].features},
        episode_starts=joined.episode_starts,
        episode_ends=joined.episode_ends,
    )
    expected = compute_stats(flat, list(flat.features))
    for key, stats in expected.items():
        for name, value in stats.items():
            np.testing.assert_allclose(joined.stats[key][name], value, rtol=1e-5, atol=1e-6, err_msg=f"{key} {name}")


def test_the_union_of_lerobot_datasets_has_statistics_over_all_frames(two, tmp_path):
    both = load(two, tmp_path)
    action = np.concatenate([np.asarray(load(r, tmp_path).arrays["action"]) for r in two])
    np.testing.assert_allclose(both.stats["action"]["mean"], action.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(both.stats["action"]["std"], action.std(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(both.stats["action"]["min"], action.min(0))


def test_concatenated_frames_index_like_an_array():
    parts = [np.arange(12).reshape(4, 3), np.arange(100, 106).reshape(2, 3), np.arange(200, 209).reshape(3, 3)]
    frames, flat = ConcatFrames(parts), np.concatenate(parts)
    assert len(frames) == 9 and frames.shape == (9, 3) and frames.dtype == flat.dtype
    for index in (0, 4, 8, -1, slice(3, 7), slice(None), np.array([[8, 0], [4, 5]]), [5, 3, 3]):
        np.testing.assert_array_equal(frames[index], flat[index])
    np.testing.assert_array_equal(np.asarray(frames), flat)
    with pytest.raises(IndexError):
        frames[9]


# --------------------------------------------------------------------------------------- datasets that differ
@pytest.mark.parametrize(
    "other, message",
    [
        (dict(fps=15.0), r"/data/b is recorded at 15 fps but /data/a at 10 fps"),
        (
            dict(hw=(4, 6)),
            r"/data/b has 'observation.images.front' VISUAL \[3, 4, 6\] but /data/a has VISUAL \[3, 4, 5\]",
        ),
        (
            dict(features={"observation.images.wrist": PolicyFeature("VISUAL", (3, 4, 5))}),
            r"/data/b has \['observation.images.wrist'\] which /data/a has not \(dataset.cameras=\['front'\] picks",
        ),
        (
            dict(names={"action": ["x", "gripper"]}),
            r"/data/b names 'action' dimension 1 'gripper' but /data/a names it 'y'",
        ),
    ],
    ids=["fps", "frame_size", "extra_camera", "action_names"],
)
def test_datasets_that_differ_are_one_line_naming_the_one_and_how(other, message):
    with pytest.raises(ActlabError, match=rf"^dataset.root: {message}.*; the datasets of a list root must") as e:
        union([memory_store("a", [5], seed=0), memory_store("b", [5], seed=1, **other)])
    assert "\n" not in str(e.value)


def test_a_missing_feature_names_the_dataset_without_it(tmp_path):
    state_only = write_lerobot_dataset(tmp_path / "state_only", episodes=1, frames=4, image_hw=(16, 16))
    with_camera = write_lerobot_dataset(
        tmp_path / "camera", episodes=1, frames=4, cameras=("front",), video=False, image_hw=(16, 16)
    )
    with pytest.raises(ActlabError, match=r"^dataset.root: .*state_only has no \['observation.images.front'\] \(which"):
        load([with_camera, state_only], tmp_path)


# ---------------------------------------------------------------------------------------------------- weights
def stream_shares(store: EpisodeStore, weights: list[float] | None, draws: int = 4000) -> np.ndarray:
    frames = np.arange(store.num_frames)
    windows = ChunkWindows(store, frames, chunk_size=2)
    probabilities = None if weights is None else frame_probabilities(store, frames, weights)
    stream = iter(StepBatches(windows, batch_size=40, seed=0, probabilities=probabilities))
    picked = []
    for _ in range(draws // 40):
        state = next(stream)["observation.state"].numpy()
        picked.append(state[:, 0])
    # which dataset each drawn frame came from: the states of memory_store("b", seed=3) are around 30
    return np.bincount((np.concatenate(picked) > 15).astype(int), minlength=2) / draws


def test_weights_set_each_datasets_share_of_the_training_frames():
    store = union([memory_store("a", [30, 30], seed=0), memory_store("b", [20], seed=3)])
    np.testing.assert_allclose(stream_shares(store, None), [0.75, 0.25], atol=1e-9)  # every frame once an epoch
    np.testing.assert_allclose(stream_shares(store, [1, 3]), [0.25, 0.75], atol=0.02)
    np.testing.assert_allclose(stream_shares(store, [1, 1]), [0.5, 0.5], atol=0.02)
    p = frame_probabilities(store, np.arange(store.num_frames), [1, 3])
    assert np.allclose(p[:60], 0.25 / 60) and np.allclose(p[60:], 0.75 / 20)  # equal within a dataset


def test_weights_of_a_dataset_with_no_training_episode_are_one_line():
    store = union([memory_store("a", [5, 5], seed=0), memory_store("b", [5], seed=3)])
    with pytest.raises(ActlabError, match=r"^dataset.weights: every episode of /data/b is in the validation split"):
        frame_probabilities(store, np.arange(10), [1, 1])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["dataset.root=/data/a", "dataset.weights=[1,2]"], r"^dataset.weights=\[1.0, 2.0\] needs a list of datasets"),
        (["dataset.root=[/data/a,/data/b]", "dataset.weights=[1]"], r"has 1 numbers for 2 datasets in dataset.root"),
        (["dataset.root=[/data/a,/data/b]", "dataset.weights=[1,-1]"], r"expected positive numbers"),
        (["dataset.root=[]"], r"^dataset.root=\[\]: expected a folder or a non-empty list of folders"),
    ],
)
def test_bad_roots_and_weights_are_refused_at_compose_time(tmp_path, overrides, message):
    from actlab.config.compose import check_config

    with pytest.raises(ActlabError, match=message):
        check_config(compose_train(["model=tiny", "env=none", *overrides], tmp_path))


# ------------------------------------------------------------------------------------------ one root, unchanged
def test_a_single_root_reads_as_before_and_a_list_of_one_is_the_same(two, tmp_path):
    single, listed = load(two[0], tmp_path), load([two[0]], tmp_path)
    assert type(single) is EpisodeStore and single.parts == [single] and single.root == two[0]
    assert type(listed) is EpisodeStore and listed.root == two[0]
    for key in single.features:
        for name in ("mean", "std", "min", "max"):
            np.testing.assert_array_equal(single.stats[key][name], listed.stats[key][name])


# ------------------------------------------------------------------------------------------------- training
def run(tmp_path: Path, name: str, *overrides: str, steps: int = 2) -> Path:
    cfg = compose_train(
        [
            "model=tiny",
            "env=none",
            "encoder.pretrained=null",
            "dataset.batch_size=2",
            f"trainer.max_steps={steps}",
            "checkpoint.save_freq=2",
            *FAST,
            *overrides,
        ],
        tmp_path / name,
    )
    train(cfg)
    return Path(cfg.paths.output_dir)


@pytest.mark.slow
def test_fine_tune_on_the_original_and_the_recorded_datasets(two, tmp_path, caplog):
    """train on the demonstrations -> fine-tune with init_from= on [demonstrations, recorded] -> resume it."""
    demos, recorded = two
    first = run(tmp_path, "first", f"dataset.root={demos}")
    roots = f"dataset.root=[{demos},{recorded}]"
    with caplog.at_level(logging.INFO, logger="actlab"):
        tuned = run(tmp_path, "tuned", roots, "dataset.weights=[1,3]", f"init_from={first}/checkpoints/final")
    assert f"Root 1/2: {demos} (3 episodes, 36 frames, weight 1)" in caplog.messages
    assert f"Root 2/2: {recorded} (2 episodes, 16 frames, weight 3)" in caplog.messages
    saved = json.loads((tuned / "checkpoints" / "final" / "hyperparameters.json").read_text())["dataset"]
    assert saved["root"] == [str(demos), str(recorded)] and saved["weights"] == [1.0, 3.0]

    dm = ACTDataModule(LeRobotDatasetConfig(name="x", root=[str(demos), str(recorded)]), tmp_path / "c", 2, 1000)
    from actlab.policy import ACTPolicy

    mean, _ = ACTPolicy.from_pretrained(tuned / "checkpoints" / "final").normalizer.mean_std("action")
    np.testing.assert_allclose(mean.numpy(), dm.prepare().stats["action"]["mean"], rtol=1e-5)  # the union's

    resumed = run(tmp_path, "tuned", roots, "dataset.weights=[1,3]", f"resume={tuned}", steps=4)
    assert resumed == tuned
    assert torch.load(tuned / "checkpoints" / "last" / "training_state.pt", weights_only=True)["global_step"] == 4
    with pytest.raises(ActlabError, match=r"^resume=.*: dataset.weights is \[1.0, 1.0\] but the run being resumed had"):
        run(tmp_path, "tuned", roots, "dataset.weights=[1,1]", f"resume={tuned}", steps=6)
