"""LeRobot v3.0 datasets (state-only, png, mp4) become EpisodeStores; windows respect episode ends."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from actlab.config.datasets import LeRobotDatasetConfig
from actlab.data.datamodule import episode_frames, split_episodes
from actlab.data.formats import load_store
from actlab.data.windows import ChunkWindows
from actlab.errors import ActlabError
from tests.conftest import write_lerobot_dataset


def load(root, tmp_path, **kw):
    return load_store(LeRobotDatasetConfig(name="test", root=str(root), **kw), tmp_path / "cache")


def test_state_only_dataset(state_dataset, tmp_path):
    store = load(state_dataset, tmp_path)
    assert (store.num_episodes, store.num_frames, store.fps) == (4, 60, 10)
    assert {k: f.shape for k, f in store.features.items()} == {
        "observation.state": (6,),
        "observation.environment_state": (4,),
        "action": (5,),
    }
    assert store.arrays["action"].dtype == np.float32
    assert store.stats["action"]["mean"].shape == (5,)


@pytest.mark.parametrize("fixture", ["video_dataset", "png_dataset"])
def test_camera_frames_match_what_was_written(fixture, request, tmp_path):
    root = request.getfixturevalue(fixture)
    store = load(root, tmp_path)
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    reference = LeRobotDataset(f"test/{root.name}", root=root, video_backend="pyav")
    for cam in store.camera_keys:
        assert store.features[cam].shape == (3, 32, 32)
        for i in (0, 13, store.num_frames - 1):
            ours = torch.from_numpy(np.asarray(store.arrays[cam][i])).permute(2, 0, 1).float() / 255
            theirs = reference[i][cam]
            # png is lossless; AV1 video decodes to the same frames as LeRobot's own pyav decoder.
            torch.testing.assert_close(ours, theirs, atol=1 / 255 + 1e-6, rtol=0)


def test_frame_cache_is_reused_and_rebuilt_when_the_source_changes(tmp_path):
    root = write_lerobot_dataset(tmp_path / "ds", episodes=2, frames=5, cameras=("front",), video=False)
    load(root, tmp_path)
    entries = list((tmp_path / "cache").iterdir())
    load(root, tmp_path)
    assert list((tmp_path / "cache").iterdir()) == entries
    parquet = next((root / "data").rglob("*.parquet"))
    parquet.touch()
    load(root, tmp_path)
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_camera_selection(video_dataset, tmp_path):
    store = load(video_dataset, tmp_path, cameras=["wrist"])
    assert store.camera_keys == ["observation.images.wrist"]
    with pytest.raises(ActlabError, match=r"dataset.cameras: 'top' is not in .*\['front', 'wrist'\]"):
        load(video_dataset, tmp_path, cameras=["top"])


def test_missing_root_and_missing_action_fail_with_one_line(tmp_path):
    with pytest.raises(ActlabError, match="dataset.root=.* does not exist"):
        load(tmp_path / "nowhere", tmp_path)
    root = write_lerobot_dataset(tmp_path / "ds", episodes=1, frames=3)
    info = (root / "meta" / "info.json").read_text().replace('"action"', '"actions"')
    (root / "meta" / "info.json").write_text(info)
    with pytest.raises(ActlabError, match="no 'action' feature"):
        load(root, tmp_path)


def test_windows_pad_at_episode_ends_and_never_cross_them(tmp_path):
    root = write_lerobot_dataset(tmp_path / "ds", episodes=3, lengths=[3, 7, 4])  # all shorter than the chunk
    store = load(root, tmp_path)
    windows = ChunkWindows(store, np.arange(store.num_frames), chunk_size=8)
    batch = windows.__getitems__(list(range(store.num_frames)))
    actions = store.arrays["action"]
    for t in range(store.num_frames):
        ep = np.searchsorted(store.episode_ends, t, side="right")
        end = store.episode_ends[ep]
        valid = min(8, end - t)
        assert batch["action_is_pad"][t].tolist() == [False] * valid + [True] * (8 - valid)
        np.testing.assert_array_equal(batch["action"][t, :valid], actions[t : t + valid])
        np.testing.assert_array_equal(batch["action"][t, valid:], np.repeat(actions[end - 1 : end], 8 - valid, 0))
    single = windows[4]
    assert single["action"].shape == (8, 5) and single["observation.state"].shape == (6,)


def test_episode_split_is_whole_episodes_and_deterministic():
    train, val = split_episodes(20, 0.1, seed=3)
    assert len(val) == 2 and len(train) == 18 and not set(train) & set(val)
    assert np.array_equal(val, split_episodes(20, 0.1, seed=3)[1])
    assert not np.array_equal(val, split_episodes(20, 0.1, seed=4)[1])
    assert len(split_episodes(1, 0.1, seed=0)[1]) == 0  # one episode: nothing to hold out


def test_episode_frames(state_dataset, tmp_path):
    store = load(state_dataset, tmp_path)
    frames = episode_frames(store, np.array([1, 3]))
    assert frames.tolist() == list(range(15, 30)) + list(range(45, 60))
