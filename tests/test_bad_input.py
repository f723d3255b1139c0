"""Bad input gets one clear line and nothing written: every case is a real `python train.py ...` (or
`actlab-convert ...`) in a fresh folder, checked for its exact message, its exit status, no traceback, and
no run directory left behind (a resumed run keeps its own directory, with the error at the end of its
train.log). The policy API's bad inputs are at the end.

The command lines run two at a time in one fixture, `bad_runs`; `pytest -m slow -k bad_input` runs them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torchvision

from actlab.errors import ActlabError
from actlab.policy import ACTPolicy
from actlab.training.train import train
from tests.conftest import CORES_PER_WORKER, FAST, REPO, compose_train, write_g1_like_dataset, write_lerobot_dataset
from tests.formats import bimanual_frames, write_lerobot_v2, write_npy

pytestmark = pytest.mark.slow

# What every training case passes besides its own arguments: a small, fast run.
COMMON = ["model=tiny", "encoder.pretrained=null", "dataset.batch_size=2", "trainer.max_steps=2", *FAST]


@dataclass
class Base:
    """Data and a finished run that the cases copy and damage."""

    root: Path
    state: Path  # LeRobot v3.0, state only
    video: Path  # LeRobot v3.0, one mp4 camera
    run: Path  # a finished 2-step run on `state`

    def copy(self, source: Path, case: Path) -> Path:
        target = case / source.name
        shutil.copytree(source, target)
        return target


@dataclass
class Case:
    args: list[str]
    message: str  # the exact line after "error: " (exit status 2)
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    command: str = "train.py"
    keeps_run_dir: Path | None = None  # a resumed run's directory, which must stay


def data_file(root: Path) -> Path:
    return next((root / "data").rglob("*.parquet"))


def rewrite_parquet(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    pq.write_table(change(pq.read_table(path)), path)


def set_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, values)


def edit_json(path: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# ----------------------------------------------------------------------------------------------- cases
def lerobot_missing_root(base: Base, case: Path) -> Case:
    return Case(
        [f"dataset.root={case}/nope"], f"dataset.root={case}/nope does not exist; expected a LeRobot dataset folder"
    )


def lerobot_folder_without_info_json(base: Base, case: Path) -> Case:
    (case / "ds").mkdir()
    return Case(
        [f"dataset.root={case}/ds"], f"dataset.root={case}/ds has no meta/info.json; expected a LeRobot dataset folder"
    )


def lerobot_info_json_not_json(base: Base, case: Path) -> Case:
    root = base.copy(base.state, case)
    (root / "meta" / "info.json").write_text("{codebase_version: v3.0")
    return Case(
        [f"dataset.root={root}"],
        f"{root}/meta/info.json: cannot be read as JSON (Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1))",
    )


def lerobot_unknown_codebase_version(base: Base, case: Path) -> Case:
    root = base.copy(base.state, case)
    edit_json(root / "meta" / "info.json", lambda info: info.update(codebase_version="v1.6"))
    return Case(
        [f"dataset.root={root}"],
        f"{root}/meta/info.json: codebase_version 'v1.6' is not one of ('v2.0', 'v2.1', 'v3.0')",
    )


def parquet_truncated_file(base: Base, case: Path) -> Case:
    root = base.copy(base.state, case)
    path = data_file(root)
    path.write_bytes(path.read_bytes()[:300])
    return Case(
        ["dataset=parquet", f"dataset.root={root}"],
        f"{path}: not a readable parquet file (ArrowInvalid: Parquet magic bytes not found in footer. Either the "
        "file is corrupted or this is not a parquet file.)",
    )


def lerobot_no_data_files(base: Base, case: Path) -> Case:
    root = base.copy(base.state, case)
    shutil.rmtree(root / "data")
    return Case([f"dataset.root={root}"], f"{root}/data holds no parquet files")


def parquet_missing_column(base: Base, case: Path) -> Case:
    root = base.copy(base.state, case)
    rewrite_parquet(data_file(root), lambda t: t.drop_columns(["observation.state"]))
    return Case(
        ["dataset=parquet", f"dataset.root={root}"], f"{data_file(root)}: missing columns ['observation.state']"
    )


def lerobot_actions_of_the_wrong_dtype(base: Base, case: Path) -> Case:
    root = base.copy(base.state, case)
    strings = pa.array([["0.1"] * 5] * 36, type=pa.list_(pa.string()))
    rewrite_parquet(data_file(root), lambda t: set_column(t, "action", strings))
    return Case([f"dataset.root={root}"], f"{data_file(root)}: 'action' holds string values; expected numbers")


def lerobot_nan_in_actions(base: Base, case: Path) -> Case:
    root = base.copy(base.state, case)

    def with_nan(table: pa.Table) -> pa.Table:
        values = np.stack(table["action"].to_numpy(zero_copy_only=False)).astype(np.float32)
        values[14, 2] = np.nan
        return set_column(table, "action", pa.array(list(values), type=pa.list_(pa.float32())))

    rewrite_parquet(data_file(root), with_nan)
    return Case([f"dataset.root={root}"], f"{root}: 'action' holds NaN or Inf values (first at frame 14)")


def lerobot_vector_of_another_size(base: Base, case: Path) -> Case:
    root = base.copy(base.state, case)
    edit_json(root / "meta" / "info.json", lambda info: info["features"]["action"].update(shape=[7]))
    return Case([f"dataset.root={root}"], f"{data_file(root)}: 'action' has 180 values for 36 frames; expected 7 each")


def lerobot_episode_lengths_disagree_with_meta(base: Base, case: Path) -> Case:
    root = base.copy(base.state, case)
    episodes = next((root / "meta" / "episodes").rglob("*.parquet"))
    rewrite_parquet(episodes, lambda t: set_column(t, "length", pa.array([12, 13, 12], type=pa.int64())))
    return Case(
        [f"dataset.root={root}"],
        f"{root}: episode 1 has 12 frames in data/ but meta/episodes says 13; the dataset is inconsistent",
    )


def lerobot_episode_listed_without_frames(base: Base, case: Path) -> Case:
    root = base.copy(base.state, case)
    rewrite_parquet(data_file(root), lambda t: t.slice(0, 24))  # episode 2 loses all its frames
    return Case(
        [f"dataset.root={root}"],
        f"{root}: meta/episodes lists episode 2 (12 frames) but data/ has no frames of it; the dataset is inconsistent",
    )


def lerobot_no_frames_at_all(base: Base, case: Path) -> Case:
    root = base.copy(base.state, case)
    rewrite_parquet(data_file(root), lambda t: t.slice(0, 0))
    return Case([f"dataset.root={root}"], f"{root}/data: the parquet files hold no frames")


def lerobot_unknown_camera(base: Base, case: Path) -> Case:
    return Case(
        [f"dataset.root={base.video}", "dataset.cameras=[top]"],
        f"dataset.cameras: 'top' is not in {base.video} (cameras there: ['front'])",
    )


def lerobot_missing_video(base: Base, case: Path) -> Case:
    root = base.copy(base.video, case)
    mp4 = next((root / "videos").rglob("*.mp4"))
    mp4.unlink()
    return Case([f"dataset.root={root}"], f"{mp4} is missing (camera 'observation.images.front')")


def lerobot_corrupt_video(base: Base, case: Path) -> Case:
    root = base.copy(base.video, case)
    mp4 = next((root / "videos").rglob("*.mp4"))
    mp4.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    return Case(
        [f"dataset.root={root}"],
        f"{mp4}: cannot be decoded as a video (InvalidDataError: Invalid data found when processing input)",
    )


def lerobot_frames_of_another_size(base: Base, case: Path) -> Case:
    root = base.copy(base.video, case)
    edit_json(
        root / "meta" / "info.json", lambda i: i["features"]["observation.images.front"].update(shape=[24, 24, 3])
    )
    return Case(
        [f"dataset.root={root}"],
        f"{root}: 'observation.images.front' frames are (32, 32, 3); meta/info.json says (24, 24, 3)",
    )


def lerobot_v21_without_episodes_jsonl(base: Base, case: Path) -> Case:
    root, _ = write_lerobot_v2(case / "v21", [4, 5], "v2.1")
    (root / "meta" / "episodes.jsonl").unlink()
    return Case([f"dataset.root={root}"], f"{root}/meta/episodes.jsonl is missing")


def parquet_format_without_root(base: Base, case: Path) -> Case:
    return Case(
        ["dataset=parquet"], "dataset=parquet: set dataset.root=/path/to/dataset (a folder with meta/info.json)"
    )


def npy(case: Path, lengths=(6, 7), change: Callable[[dict], None] | None = None, **kw) -> Path:
    data = bimanual_frames(list(lengths))
    if change:
        change(data)
    return write_npy(case / "npy", "folder", list(lengths), data, **kw)


def npy_missing_actions(base: Base, case: Path) -> Case:
    root = npy(case)
    (root / "actions.npy").unlink()
    return Case(["dataset=npy", f"dataset.root={root}"], f"{root}/actions.npy is missing")


def npy_lengths_do_not_add_up(base: Base, case: Path) -> Case:
    root = npy(case)
    np.save(root / "rollout_length.npy", np.array([6, 9], dtype=np.uint16))
    return Case(
        ["dataset=npy", f"dataset.root={root}"], f"{root}/rollout_length.npy sums to 15 frames but actions.npy has 13"
    )


def npy_episode_of_zero_frames(base: Base, case: Path) -> Case:
    root = npy(case)
    np.save(root / "rollout_length.npy", np.array([13, 0], dtype=np.uint16))
    return Case(
        ["dataset=npy", f"dataset.root={root}"], f"{root}/rollout_length.npy: every episode needs at least one frame"
    )


def npy_no_episodes(base: Base, case: Path) -> Case:
    root = npy(case)
    np.save(root / "rollout_length.npy", np.array([], dtype=np.int64))
    return Case(
        ["dataset=npy", f"dataset.root={root}"], f"{root}/rollout_length.npy: every episode needs at least one frame"
    )


def npy_float_lengths(base: Base, case: Path) -> Case:
    root = npy(case)
    np.save(root / "rollout_length.npy", np.array([6.0, 7.0]))
    return Case(
        ["dataset=npy", f"dataset.root={root}"],
        f"{root}/rollout_length.npy: expected a 1-D integer array of episode lengths; got float64 (2,)",
    )


def npy_nan_in_state(base: Base, case: Path) -> Case:
    root = npy(case, change=lambda d: d["state"].__setitem__((3, 1), np.nan))
    return Case(
        ["dataset=npy", f"dataset.root={root}"], f"{root}/observations: 'state' holds NaN or Inf (first at frame 3)"
    )


def npy_images_of_the_wrong_dtype(base: Base, case: Path) -> Case:
    root = npy(case, change=lambda d: d.update(image_left=d["image_left"].astype(np.int32)))
    return Case(
        ["dataset=npy", f"dataset.root={root}"],
        f"{root}/observations: 'observation.images.left' must be uint8 (or float in [0, 1]), got int32",
    )


def npy_observations_of_another_length(base: Base, case: Path) -> Case:
    root = npy(case)
    np.save(root / "observations" / "state.npy", np.zeros((12, 6), np.float32))
    return Case(
        ["dataset=npy", f"dataset.root={root}"], f"{root}/observations: 'state' has 12 frames but actions.npy has 13"
    )


def npy_truncated_file(base: Base, case: Path) -> Case:
    root = npy(case)
    (root / "actions.npy").write_bytes((root / "actions.npy").read_bytes()[:500])
    return Case(
        ["dataset=npy", f"dataset.root={root}"],
        f"{root}/actions.npy: not a numeric .npy array (mmap length is greater than file size)",
    )


def npy_pickle_without_permission(base: Base, case: Path) -> Case:
    root = write_npy(case / "npy", "dicts", [6, 7], bimanual_frames([6, 7]))
    return Case(
        ["dataset=npy", f"dataset.root={root}"],
        f"{root}/observations.npy holds Python objects and loading it runs pickle, which can execute code: if you "
        "trust the file pass dataset.allow_pickle=true, or convert it once with actlab-convert",
    )


def npy_camera_map_names_a_missing_key(base: Base, case: Path) -> Case:
    root = npy(case)
    return Case(
        ["dataset=npy", f"dataset.root={root}", "dataset.camera_map={image_top: top}"],
        f"{root}/observations: no ['image_top'] (dataset.camera_map); it holds ['image_left', 'image_right', 'state']",
    )


def unknown_group_option(base: Base, case: Path) -> Case:
    return Case(
        ["model=huge"], "model=huge: no such option; did you mean model=large? (options: baseline, custom, large, tiny)"
    )


def value_of_the_wrong_type(base: Base, case: Path) -> Case:
    return Case(
        ["trainer.max_steps=many"], "trainer.max_steps: Value 'many' of type 'str' could not be converted to Integer"
    )


def misspelt_key(base: Base, case: Path) -> Case:
    return Case(["model.dim_modle=256"], "model.dim_modle: no such key; did you mean model.dim_model?")


def misspelt_key_added_with_a_plus(base: Base, case: Path) -> Case:
    """Hydra's own hint for a misspelt key; accepted and never read before."""
    return Case(["+trainer.max_step=3"], "trainer.max_step: no such key; did you mean trainer.max_steps?")


def misspelt_model_key_added_with_two_pluses(base: Base, case: Path) -> Case:
    return Case(["++model.dim_modle=64"], "model.dim_modle: no such key; did you mean model.dim_model?")


def key_of_another_encoder(base: Base, case: Path) -> Case:
    return Case(
        ["encoder=resnet18", "encoder.model_name=x"],
        "encoder.model_name: no such key; did you mean encoder.name? (model_name is a key of encoder=clip)",
    )


def resnet_key_for_clip(base: Base, case: Path) -> Case:
    return Case(
        ["encoder=clip", "encoder.norm=group_norm"],
        "encoder.norm: no such key; did you mean encoder.name? (norm is a key of encoder=resnet18 and encoder=pri3d)",
    )


def npy_key_for_a_lerobot_dataset(base: Base, case: Path) -> Case:
    return Case(
        ["dataset=lerobot", "dataset.allow_pickle=true"],
        "dataset.allow_pickle: no such key; did you mean dataset.val_split? (allow_pickle is a key of dataset=npy)",
    )


def fps_for_a_lerobot_dataset(base: Base, case: Path) -> Case:
    """Ignored before (a LeRobot dataset's fps is its info.json's)."""
    return Case(
        ["dataset=lerobot", "dataset.fps=7"],
        "dataset.fps: no such key; did you mean dataset.format? (fps is a key of dataset=npy)",
    )


def robosuite_key_for_aloha(base: Base, case: Path) -> Case:
    return Case(
        ["env=aloha", "env.robot=Sawyer"],
        "env.robot: no such key; did you mean env.control_freq? (robot is a key of env=robosuite)",
    )


def action_steps_beyond_the_chunk(base: Base, case: Path) -> Case:
    return Case(
        [f"dataset.root={base.state}", "model.n_action_steps=30"],
        "model.n_action_steps=30 exceeds model.chunk_size=20; expected n_action_steps <= chunk_size",
    )


def temporal_ensembling_with_several_action_steps(base: Base, case: Path) -> Case:
    return Case(
        [f"dataset.root={base.state}", "model.temporal_ensemble_coeff=0.01"],
        "model.temporal_ensemble_coeff needs model.n_action_steps=1 (the policy is queried every step); "
        "got n_action_steps=10",
    )


def width_not_divisible_by_heads(base: Base, case: Path) -> Case:
    return Case(
        [f"dataset.root={base.state}", "model.dim_model=130"], "model.dim_model=130 is not divisible by model.n_heads=4"
    )


def unknown_dataset_format(base: Base, case: Path) -> Case:
    return Case(
        [f"dataset.root={base.state}", "dataset.format=hdf5"],
        "dataset.format='hdf5' is not one of ['lerobot', 'npy', 'parquet']",
    )


def unknown_policy_precision(base: Base, case: Path) -> Case:
    return Case(
        [f"dataset.root={base.state}", "policy.precision=fp16"],
        "policy.precision='fp16' is not one of ['auto', 'fp32', 'bf16']",
    )


def unknown_trainer_precision(base: Base, case: Path) -> Case:
    return Case(
        [f"dataset.root={base.state}", "trainer.precision=fp8"],
        "trainer.precision='fp8' is not one of ['auto', '32-true', 'bf16-mixed', '16-mixed', 'bf16-true', '16-true', "
        "'64-true', 'transformer-engine', 'transformer-engine-float16', '32', '16', '64', 'bf16']",
    )


def eval_metric_without_a_simulator(base: Base, case: Path) -> Case:
    return Case(
        [f"dataset.root={base.state}", "optimized_metric=eval/success_rate"],
        "optimized_metric=eval/success_rate is not a metric this run logs (eval/* needs an env with env.eval_freq>0 "
        "or env.final_eval_episodes>0); it logs ['train/loss', 'train/l1_loss', 'train/grad_norm', 'lr', 'val/loss', "
        "'train/update_s', 'train/dataloading_s', 'train/samples', 'train/epochs', 'train/episodes', 'train/kld_loss']",
    )


def gpu_on_a_machine_without_one(base: Base, case: Path) -> Case:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    return Case(
        [f"dataset.root={base.state}", "hardware=gpu"],
        "trainer.accelerator=gpu (hardware=gpu) but no CUDA GPU is visible here (torch.cuda.is_available() is False); "
        "use hardware=cpu, or hardware=auto to take a GPU when there is one",
    )


def metric_that_was_never_logged(base: Base, case: Path) -> Case:
    """Checked after training: a run without held-out episodes logs no val/loss. The run keeps its
    checkpoints, so its directory stays, with the error at the end of train.log."""
    return Case(
        [f"dataset.root={base.state}", "dataset.val_split=0", "optimized_metric=val/loss", f"hydra.run.dir={case}/run"],
        "optimized_metric=val/loss was not logged by this run (e.g. val/loss needs held-out episodes); it logged "
        "['lr', 'train/dataloading_s', 'train/episodes', 'train/epochs', 'train/grad_norm', 'train/kld_loss', "
        "'train/l1_loss', 'train/loss', 'train/samples', 'train/update_s']",
        keeps_run_dir=case / "run",
    )


def resume_of_a_missing_run(base: Base, case: Path) -> Case:
    return Case(
        [f"dataset.root={base.state}", f"resume={case}/nowhere"],
        f"resume={case}/nowhere: no checkpoint at {case}/nowhere/checkpoints/last; expected a run directory with "
        "checkpoints/last",
    )


def resume(base: Base, case: Path, *extra: str) -> tuple[Path, list[str]]:
    run = base.copy(base.run, case)
    return run, [f"dataset.root={base.state}", f"resume={run}", "trainer.max_steps=4", *extra]


def resume_with_truncated_weights(base: Base, case: Path) -> Case:
    run, args = resume(base, case)
    weights = run / "checkpoints" / "last" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return Case(
        args,
        f"{weights}: cannot be read (SafetensorError: Error while deserializing header: invalid header length)",
        keeps_run_dir=run,
    )


def resume_with_a_pickle_weights_only_refuses(base: Base, case: Path) -> Case:
    run, args = resume(base, case)
    state = run / "checkpoints" / "last" / "training_state.pt"
    torch.save({"global_step": 2, "sneaky": Path("/etc/passwd")}, state)
    return Case(
        args,
        f"{state}: cannot be read (UnpicklingError: Weights only load failed. This file can still be loaded, to do "
        "so you have two options, do those steps only if you trust the source of the checkpoint.); it is damaged or "
        "not an actlab checkpoint: resume from another run directory or start afresh",
        keeps_run_dir=run,
    )


def resume_with_the_config_json_of_another_model(base: Base, case: Path) -> Case:
    run, args = resume(base, case)
    config = run / "checkpoints" / "last" / "config.json"
    edit_json(config, lambda c: c.update(dim_model=64))
    return Case(
        args,
        f"resume={run}: {config} has dim_model=64 but this run builds dim_model=128; the checkpoint does not belong "
        "to this run",
        keeps_run_dir=run,
    )


def resume_with_the_weights_of_another_model(base: Base, case: Path) -> Case:
    from safetensors.torch import save_file

    run, args = resume(base, case)
    last = run / "checkpoints" / "last"
    policy = ACTPolicy.from_pretrained(last)
    other = ACTPolicy(dataclasses.replace(policy.config, dim_feedforward=256))
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, last / "model.safetensors")
    return Case(
        args,
        f"{last}/model.safetensors: 'policy.model.vae_encoder.layers.0.linear1.weight' has shape [256, 128] but the "
        "policy in config.json expects [512, 128]; the weights and config.json come from different models",
        keeps_run_dir=run,
    )


def resume_on_another_dataset(base: Base, case: Path) -> Case:
    run, args = resume(base, case)
    return Case(
        [*args, f"dataset.root={base.video}"],
        f"resume={run}: dataset.root is {base.video} but the run being resumed had {base.state}; pass the same "
        "settings as that run (resume continues it)",
        keeps_run_dir=run,
    )


def resume_with_another_architecture(base: Base, case: Path) -> Case:
    run, args = resume(base, case)
    return Case(
        [*args, "model.n_encoder_layers=3"],
        f"resume={run}: model.n_encoder_layers is 3 but the run being resumed had 2; pass the same settings as that "
        "run (resume continues it)",
        keeps_run_dir=run,
    )


def encoder_weights_file_missing(base: Base, case: Path) -> Case:
    return Case(
        [f"dataset.root={base.video}", "encoder.pretrained=imagenet", f"encoder.weights={case}/r18.pth"],
        f"encoder.weights={case}/r18.pth: no such file",
    )


def encoder_weights_file_truncated(base: Base, case: Path) -> Case:
    buffer = case / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), buffer)
    buffer.write_bytes(buffer.read_bytes()[:5000])
    return Case(
        [f"dataset.root={base.video}", "encoder.pretrained=imagenet", f"encoder.weights={buffer}"],
        f"encoder.weights={buffer}: cannot be read as a checkpoint (OSError: [Errno 22] Invalid argument)",
    )


def encoder_weights_of_another_architecture(base: Base, case: Path) -> Case:
    torch.save(torchvision.models.resnet50().state_dict(), case / "r50.pth")
    return Case(
        [f"dataset.root={base.video}", "encoder.pretrained=imagenet", f"encoder.weights={case}/r50.pth"],
        f"encoder.weights={case}/r50.pth: not resnet18 weights: 'layer1.0.conv1.weight' has shape [64, 64, 1, 1], "
        "resnet18 expects [64, 64, 3, 3]",
    )


def pri3d_without_a_checkpoint(base: Base, case: Path) -> Case:
    return Case(
        [f"dataset.root={base.video}", "encoder=pri3d", "encoder.pretrained=pri3d"],
        "encoder.pretrained=pri3d needs encoder.weights=/path/to/pri3d_checkpoint.pth (a {'model': state_dict} file), "
        "or encoder.pretrained=null for random init",
    )


def headline_command_offline(base: Base, case: Path) -> Case:
    """`python train.py model=large dataset=g1 dataset.root=...` on a machine without the ImageNet weights,
    offline: the first run of a new user without a network."""
    root = write_g1_like_dataset(case / "g1", frames=5)
    cached = case / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    url = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    return Case(
        ["model=large", "dataset=g1", f"dataset.root={root}", "encoder.pretrained=imagenet"],
        f"encoder.pretrained=imagenet: resnet18 weights are not at {cached} and HF_HUB_OFFLINE is set, so nothing is "
        "downloaded; ways out: connect to the internet once (the file is then cached for later runs), or download "
        f"{url} elsewhere and copy it to {cached} (or pass encoder.weights=FILE), or set encoder.pretrained=null for "
        "random init",
        env={"HF_HUB_OFFLINE": "1", "TORCH_HOME": str(case / "torch")},
    )


def convert_without_output(base: Base, case: Path) -> Case:
    root = npy(case)
    return Case(
        ["dataset=npy", f"dataset.root={root}"],
        "output= is required: actlab-convert dataset=<format> dataset.root=SOURCE output=NEW_FOLDER",
        command="convert",
    )


def convert_into_an_existing_folder(base: Base, case: Path) -> Case:
    root = npy(case)
    (case / "out").mkdir()
    return Case(
        ["dataset=npy", f"dataset.root={root}", f"output={case}/out"],
        f"output={case}/out already exists; choose a new folder",
        command="convert",
    )


CASES = {
    f.__name__: f
    for f in [
        lerobot_missing_root,
        lerobot_folder_without_info_json,
        lerobot_info_json_not_json,
        lerobot_unknown_codebase_version,
        parquet_truncated_file,
        lerobot_no_data_files,
        parquet_missing_column,
        lerobot_actions_of_the_wrong_dtype,
        lerobot_nan_in_actions,
        lerobot_vector_of_another_size,
        lerobot_episode_lengths_disagree_with_meta,
        lerobot_episode_listed_without_frames,
        lerobot_no_frames_at_all,
        lerobot_unknown_camera,
        lerobot_missing_video,
        lerobot_corrupt_video,
        lerobot_frames_of_another_size,
        lerobot_v21_without_episodes_jsonl,
        parquet_format_without_root,
        npy_missing_actions,
        npy_lengths_do_not_add_up,
        npy_episode_of_zero_frames,
        npy_no_episodes,
        npy_float_lengths,
        npy_nan_in_state,
        npy_images_of_the_wrong_dtype,
        npy_observations_of_another_length,
        npy_truncated_file,
        npy_pickle_without_permission,
        npy_camera_map_names_a_missing_key,
        unknown_group_option,
        value_of_the_wrong_type,
        misspelt_key,
        misspelt_key_added_with_a_plus,
        misspelt_model_key_added_with_two_pluses,
        key_of_another_encoder,
        resnet_key_for_clip,
        npy_key_for_a_lerobot_dataset,
        fps_for_a_lerobot_dataset,
        robosuite_key_for_aloha,
        action_steps_beyond_the_chunk,
        temporal_ensembling_with_several_action_steps,
        width_not_divisible_by_heads,
        unknown_dataset_format,
        unknown_policy_precision,
        unknown_trainer_precision,
        eval_metric_without_a_simulator,
        gpu_on_a_machine_without_one,
        metric_that_was_never_logged,
        resume_of_a_missing_run,
        resume_with_truncated_weights,
        resume_with_a_pickle_weights_only_refuses,
        resume_with_the_config_json_of_another_model,
        resume_with_the_weights_of_another_model,
        resume_on_another_dataset,
        resume_with_another_architecture,
        encoder_weights_file_missing,
        encoder_weights_file_truncated,
        encoder_weights_of_another_architecture,
        pri3d_without_a_checkpoint,
        headline_command_offline,
        convert_without_output,
        convert_into_an_existing_folder,
    ]
}


# ----------------------------------------------------------------------------------------------- running
@dataclass
class Result:
    case: Case
    cwd: Path
    returncode: int
    stdout: str
    stderr: str


def run_case(case: Case, cwd: Path) -> Result:
    if case.command == "convert":
        argv = [sys.executable, "-m", "actlab.data.convert", *case.args]
    else:
        argv = [sys.executable, str(REPO / "train.py"), *COMMON, *case.args]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "ACTLAB_DATA_DIR": str(cwd / "data"), **case.env}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    return Result(case, cwd, done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Base:
    root = tmp_path_factory.mktemp("base")
    state = write_lerobot_dataset(root / "state", episodes=3, frames=12, env_state_dim=None)
    video = write_lerobot_dataset(root / "video", episodes=2, frames=6, cameras=("front",), env_state_dim=None)
    cfg = compose_train([f"dataset.root={state}", *COMMON, "checkpoint.save_freq=2"], root)
    train(cfg)
    return Base(root, state, video, Path(cfg.paths.output_dir))


@pytest.fixture(scope="module")
def bad_runs(base, tmp_path_factory) -> dict[str, Result | str]:
    """Every case's command line, as many at a time as this worker has cores (two on 2 cores alone, one
    beside another xdist worker, whose tests keep their core); a case that cannot run here maps to the
    reason."""
    prepared = {}
    for name, make in CASES.items():
        cwd = tmp_path_factory.mktemp(name)
        try:
            prepared[name] = (make(base, cwd), cwd)
        except pytest.skip.Exception as e:
            prepared[name] = str(e)
    runnable = {k: v for k, v in prepared.items() if not isinstance(v, str)}
    with ThreadPoolExecutor(max_workers=CORES_PER_WORKER) as pool:
        futures = {name: pool.submit(run_case, case, cwd) for name, (case, cwd) in runnable.items()}
        return {name: futures[name].result() if name in futures else prepared[name] for name in prepared}


def test_there_are_at_least_30_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_one_line_and_writes_nothing(bad_runs, name):
    result = bad_runs[name]
    if isinstance(result, str):
        pytest.skip(result)
    case, output = result.case, result.stdout + result.stderr
    assert "Traceback" not in output, output[-3000:]
    assert result.returncode == 2, output[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1] == f"error: {case.message}", output[-3000:]
    if case.keeps_run_dir is not None:
        log = (case.keeps_run_dir / "train.log").read_text().splitlines()
        assert log[-1].endswith(f"[ERROR] error: {case.message}")
    else:
        assert not (result.cwd / "outputs").exists()  # no run directory, not even an empty date folder
    cache = result.cwd / "data" / ".cache"
    assert not (cache.is_dir() and any(".tmp-" in p.name for p in cache.iterdir()))  # no half-built frame cache


# ----------------------------------------------------------------------------------------------- policy API
def test_an_unbatched_observation_is_one_line_naming_the_key_and_the_shape(base):
    policy = ACTPolicy.from_pretrained(base.run / "checkpoints" / "final")
    with pytest.raises(ActlabError) as e:
        policy.select_action({"observation.state": torch.zeros(6)})
    assert str(e.value) == (
        "observation 'observation.state' has shape [6]; expected ['batch', 6]; add a batch dimension (e.g. value[None])"
    )
    with pytest.raises(
        ActlabError, match=r"^observation 'observation.state' has shape \[1, 7\]; expected \['batch', 6\]$"
    ):
        policy.predict_action_chunk({"observation.state": torch.zeros(1, 7)})
    with pytest.raises(ActlabError, match=r"^the observation has no 'observation.state'"):
        policy.select_action({"state": torch.zeros(1, 6)})
    assert policy.select_action({"observation.state": np.zeros((1, 6), np.float32)}).shape == (1, 5)  # numpy is fine


def test_from_pretrained_of_damaged_or_foreign_folders_is_one_line(base, tmp_path):
    folder = base.copy(base.run / "checkpoints" / "final", tmp_path)
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(ActlabError, match=rf"^{folder}/model.safetensors: cannot be read \(SafetensorError: "):
        ACTPolicy.from_pretrained(folder)
    (folder / "config.json").write_text('{"policy": "act", "chunk_size": 100}')
    with pytest.raises(ActlabError, match=rf"^{folder}/config.json: policy config has unknown keys \['policy'\]$"):
        ACTPolicy.from_pretrained(folder)
    (folder / "config.json").write_text('{"type": "diffusion"}')  # a LeRobot folder of another policy
    with pytest.raises(ActlabError, match=rf"^{folder}/config.json: a LeRobot 'diffusion' policy; actlab reads "):
        ACTPolicy.from_pretrained(folder)
    with pytest.raises(ActlabError, match=rf"^{tmp_path}/nothing is not a policy folder: config.json is missing$"):
        ACTPolicy.from_pretrained(tmp_path / "nothing")
