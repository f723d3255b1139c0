"""Every dataset format ends in the same EpisodeStore: the npy layouts of seed 002, LeRobot folders v2.0,
v2.1 (written by hand) and v3.0 (LeRobot's writer) through `dataset=lerobot` and `dataset=parquet`, the
converter to LeRobot v3.0, windows with history, and augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from actlab.config.datasets import AugmentConfig, DatasetConfig, dataset_formats
from actlab.data.augment import ImageAugment
from actlab.data.convert import write_lerobot
from actlab.data.formats import load_store
from actlab.data.windows import ChunkWindows, StepBatches
from actlab.errors import ActlabError
from tests.conftest import write_lerobot_dataset
from tests.formats import bimanual_frames, write_lerobot_v2, write_npy

LENGTHS = [5, 9, 4]


def load(tmp_path, root, fmt="npy", **kw):
    return load_store(dataset_formats()[fmt](name=fmt, root=str(root), **kw), tmp_path / "cache")


@pytest.mark.parametrize("layout", ["folder", "npz", "dicts", "dict_of_arrays", "flat", "flat_raw"])
def test_npy_layouts_give_the_same_store(tmp_path, layout):
    data = bimanual_frames(LENGTHS)
    root = write_npy(tmp_path / layout, layout, LENGTHS, data)
    store = load(tmp_path, root, allow_pickle=layout in ("dicts", "dict_of_arrays"))
    assert store.episode_lengths.tolist() == LENGTHS
    assert {k: f.shape for k, f in store.features.items()} == {
        "observation.state": (6,),
        "observation.images.left": (3, 16, 20),
        "observation.images.right": (3, 16, 20),
        "action": (14,),
    }
    np.testing.assert_array_equal(store.arrays["action"], data["actions"])
    np.testing.assert_array_equal(store.arrays["observation.state"], data["state"])
    # flat rows store images as float in [0, 1]; they come back as the same uint8 values
    np.testing.assert_array_equal(np.asarray(store.arrays["observation.images.left"]), data["image_left"])
    np.testing.assert_array_equal(np.asarray(store.arrays["observation.images.right"]), data["image_right"])
    if layout == "folder":  # separate .npy files are memory-mapped, not loaded
        assert isinstance(store.arrays["observation.images.left"], np.memmap)


@pytest.mark.parametrize("layout", ["dicts", "dict_of_arrays"])
def test_pickle_is_refused_without_the_flag(tmp_path, layout):
    root = write_npy(tmp_path / "ds", layout, LENGTHS, bimanual_frames(LENGTHS))
    with pytest.raises(ActlabError, match="holds Python objects .* pass dataset.allow_pickle=true"):
        load(tmp_path, root)


def test_any_integer_dtype_for_rollout_lengths(tmp_path):
    for dtype in (np.uint16, np.int32, np.int64):
        root = write_npy(tmp_path / str(np.dtype(dtype)), "folder", LENGTHS, bimanual_frames(LENGTHS), dtype)
        assert load(tmp_path, root).episode_lengths.tolist() == LENGTHS


def _corrupt(root, what):
    if what == "lengths":
        np.save(root / "rollout_length.npy", np.array([5, 9, 5], dtype=np.uint16))
    elif what == "count":
        np.save(root / "observations" / "state.npy", np.zeros((17, 6), np.float32))
    elif what == "dtype":
        np.save(root / "actions.npy", np.zeros((18, 14), np.int64))
    elif what == "rank":
        np.save(root / "observations" / "state.npy", np.zeros((18,), np.float32))
    elif what == "nan":
        actions = np.load(root / "actions.npy")
        actions[7, 2] = np.nan
        np.save(root / "actions.npy", actions)
    elif what == "float_lengths":
        np.save(root / "rollout_length.npy", np.array([5.0, 9.0, 4.0]))


@pytest.mark.parametrize(
    "what,message",
    [
        ("lengths", "rollout_length.npy sums to 19 frames but actions.npy has 18"),
        ("count", "'state' has 17 frames but actions.npy has 18"),
        ("dtype", "'actions' must be a 2-D float array, got int64"),
        ("rank", "'state' must be a 2-D float array"),
        ("nan", "'actions' holds NaN or Inf \\(first at frame 7\\)"),
        ("float_lengths", "expected a 1-D integer array of episode lengths"),
    ],
)
def test_npy_bad_input_fails_with_one_line(tmp_path, what, message):
    root = write_npy(tmp_path / "ds", "folder", LENGTHS, bimanual_frames(LENGTHS))
    _corrupt(root, what)
    with pytest.raises(ActlabError, match=message):
        load(tmp_path, root)


def test_npy_images_of_different_sizes_fail(tmp_path):
    data = bimanual_frames(LENGTHS)
    root = write_npy(tmp_path / "ds", "dicts", LENGTHS, data)
    frames = np.load(root / "observations.npy", allow_pickle=True)
    frames[4]["image_left"] = np.zeros((8, 8, 3), np.uint8)
    np.save(root / "observations.npy", frames, allow_pickle=True)
    with pytest.raises(ActlabError, match=r"frame 4 has 'image_left' of shape \(8, 8, 3\); frame 0 has \(16, 20, 3\)"):
        load(tmp_path, root, allow_pickle=True)


@pytest.mark.parametrize("fmt", ["lerobot", "parquet"])
@pytest.mark.parametrize("version", ["v2.0", "v2.1"])
def test_lerobot_v2_folders(tmp_path, fmt, version):
    root, arrays = write_lerobot_v2(tmp_path / "ds", LENGTHS, version, cameras={"top": "video", "wrist": "image"})
    store = load(tmp_path, root, fmt)
    assert store.episode_lengths.tolist() == LENGTHS and store.fps == 10
    for key in ("observation.state", "action"):
        np.testing.assert_array_equal(store.arrays[key], arrays[key])
        np.testing.assert_allclose(store.stats[key]["mean"], arrays[key].mean(0), atol=1e-5)
    np.testing.assert_array_equal(store.arrays["observation.images.wrist"], arrays["observation.images.wrist"])
    top = np.asarray(store.arrays["observation.images.top"], dtype=np.int16)
    assert np.abs(top - arrays["observation.images.top"]).max() <= 6  # lossy AV1 of flat colours


@pytest.mark.parametrize("fmt", ["lerobot", "parquet"])
def test_lerobot_v3_folder_matches_lerobots_own_reader(tmp_path, fmt, video_dataset):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    store = load(tmp_path, video_dataset, fmt)
    reference = LeRobotDataset(f"test/{video_dataset.name}", root=video_dataset, video_backend="pyav")
    for i in (0, 20, store.num_frames - 1):
        item = reference[i]
        np.testing.assert_allclose(store.arrays["action"][i], item["action"].numpy())
        ours = torch.from_numpy(np.array(store.arrays["observation.images.front"][i])).permute(2, 0, 1) / 255
        torch.testing.assert_close(ours, item["observation.images.front"], atol=1 / 255 + 1e-6, rtol=0)


def test_unknown_codebase_version_fails(tmp_path):
    root, _ = write_lerobot_v2(tmp_path / "ds", LENGTHS)
    info = root / "meta" / "info.json"
    info.write_text(info.read_text().replace('"v2.1"', '"v1.6"'))
    with pytest.raises(ActlabError, match="codebase_version 'v1.6' is not one of"):
        load(tmp_path, root, "parquet")


def test_converter_round_trip_npy_to_lerobot_v3(tmp_path):
    data = bimanual_frames(LENGTHS)
    source = load(tmp_path, write_npy(tmp_path / "npy", "dicts", LENGTHS, data), allow_pickle=True)
    out = write_lerobot(source, tmp_path / "lerobot", "local/test", "bimanual", video=False)
    converted = load(tmp_path, out, "lerobot")
    assert converted.episode_lengths.tolist() == LENGTHS
    for key in source.features:
        np.testing.assert_array_equal(np.asarray(converted.arrays[key]), np.asarray(source.arrays[key]))
    with pytest.raises(ActlabError, match="already exists"):
        write_lerobot(source, out, "local/test", "bimanual", video=False)


@pytest.mark.parametrize("n_obs_steps", [1, 3])
def test_windows_at_episode_edges(tmp_path, n_obs_steps):
    root = write_npy(tmp_path / "ds", "folder", LENGTHS, bimanual_frames(LENGTHS))
    store = load(tmp_path, root)
    windows = ChunkWindows(store, np.arange(store.num_frames), chunk_size=6, n_obs_steps=n_obs_steps)
    batch = windows.__getitems__(list(range(store.num_frames)))
    state = store.arrays["observation.state"]
    for t in range(store.num_frames):
        ep = np.searchsorted(store.episode_ends, t, side="right")
        start, end = store.episode_starts[ep], store.episode_ends[ep]
        valid = min(6, end - t)
        assert batch["action_is_pad"][t].tolist() == [False] * valid + [True] * (6 - valid)
        if n_obs_steps == 1:
            np.testing.assert_array_equal(batch["observation.state"][t], state[t])
            assert batch["observation.images.left"].shape[1:] == (3, 16, 20)
            continue
        history = [max(start, t - 2), max(start, t - 1), t]
        np.testing.assert_array_equal(batch["observation.state"][t], state[history])
        assert batch["observation_is_pad"][t].tolist() == [t - 2 < start, t - 1 < start, False]
        assert batch["observation.images.left"].shape[1:] == (3, 3, 16, 20)


def test_augmentation_is_off_by_default_and_deterministic(tmp_path):
    root = write_npy(tmp_path / "ds", "folder", LENGTHS, bimanual_frames(LENGTHS))
    store = load(tmp_path, root)
    assert not DatasetConfig(name="x").augment.enabled
    windows = ChunkWindows(store, np.arange(store.num_frames), chunk_size=4)
    augment = ImageAugment(AugmentConfig(enabled=True), store.camera_keys)
    plain = next(iter(StepBatches(windows, 4, seed=0)))
    a = next(iter(StepBatches(windows, 4, seed=0, augment=augment)))
    b = next(iter(StepBatches(windows, 4, seed=0, augment=augment)))
    assert torch.equal(a["observation.images.left"], b["observation.images.left"])  # same seed and step
    assert not torch.equal(a["observation.images.left"], plain["observation.images.left"])
    assert a["observation.images.left"].dtype == torch.uint8
    assert torch.equal(a["observation.state"], plain["observation.state"])  # only images change


def test_random_shift_translates_each_sample_by_at_most_the_pad():
    g = torch.Generator().manual_seed(0)
    image = torch.zeros(2, 3, 24, 24, dtype=torch.uint8)  # (n_obs, 3, H, W): one sample with history
    image[:, :, 10, 12] = 255  # one white pixel, far from the edges
    augment = ImageAugment(
        AugmentConfig(
            enabled=True, crop_scale=[1.0, 1.0], shift=4, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0
        ),
        ["observation.images.a"],
    )
    moves = set()
    for _ in range(40):
        out = augment({"observation.images.a": image[None].clone()}, g)["observation.images.a"][0]
        assert out.shape == image.shape and int(out.sum()) == 2 * 3 * 255  # moved, not resampled
        (rows, cols) = (out[0, 0] == 255).nonzero(as_tuple=True)
        assert torch.equal(out[0], out[1])  # every observation step of a sample moves alike
        moves.add((int(rows[0]) - 10, int(cols[0]) - 12))
    assert all(abs(dy) <= 4 and abs(dx) <= 4 for dy, dx in moves) and len(moves) > 20


def test_a_negative_shift_fails_with_one_line():
    with pytest.raises(ActlabError, match=r"^dataset.augment.shift=-2: expected a whole number of pixels >= 0$"):
        ImageAugment(AugmentConfig(enabled=True, shift=-2), ["observation.images.a"])


def test_dataset_of_state_and_camera_keys_from_lerobot_writer_png(tmp_path):
    root = write_lerobot_dataset(tmp_path / "png", episodes=2, frames=4, cameras=("a",), video=False)
    store = load(tmp_path, root, "parquet")
    assert store.camera_keys == ["observation.images.a"]


@pytest.mark.slow
def test_actlab_convert_command(tmp_path):
    import subprocess
    import sys

    root = write_npy(tmp_path / "npy", "folder", LENGTHS, bimanual_frames(LENGTHS))

    def convert(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "actlab.data.convert", "dataset=npy", f"dataset.root={root}", *args]
        return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)

    result = convert(f"output={tmp_path / 'out'}", "video=false", f"cache_dir={tmp_path / 'cache'}")
    assert result.returncode == 0, result.stderr[-2000:]
    store = load(tmp_path, tmp_path / "out", "lerobot")
    assert store.episode_lengths.tolist() == LENGTHS and store.camera_keys == [
        "observation.images.left",
        "observation.images.right",
    ]
    again = convert(f"output={tmp_path / 'out'}")
    assert again.returncode == 2 and again.stderr.strip().splitlines()[-1].startswith("error: output=")
