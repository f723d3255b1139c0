"""A dataset or checkpoint that lies about itself (issue 18, section 3) gets one line naming the file, the key
and what was expected, never a traceback, a hang or a policy trained on nonsense:

- LeRobot meta/info.json: fps 0, -30, a string or missing; total_frames that disagrees with data/; a camera
  listed in 'features' that has no files; an action dtype that is not numeric;
- npy: a pickled object array as rollout_length.npy (allow_pickle off);
- checkpoints: hyperparameters.json corrupt, a JSON list or missing (resume=, actlab-eval and actlab-serve
  checkpoint=); a named pipe in place of config.json, model.safetensors or hyperparameters.json.

The readers are called directly first (fast); then the real command lines, in the style of
tests/test_bad_input.py (`pytest -m slow -k lying`): one line on stderr, exit status 2, no traceback and no
run directory written (a resumed run keeps its own directory).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from actlab.config.checkpoint import register_checkpoint
from actlab.config.checkpoint_files import load_run_config
from actlab.config.datasets import LeRobotDatasetConfig, NpyDatasetConfig
from actlab.data.formats.lerobot import load_lerobot
from actlab.data.formats.npy import load_npy
from actlab.errors import ActlabError
from tests.conftest import FAST, REPO, compose_train, write_lerobot_dataset
from tests.formats import bimanual_frames, write_npy

COMMON = ["model=tiny", "encoder.pretrained=null", "dataset.batch_size=2", "trainer.max_steps=2", *FAST]


def edit_info(root: Path, change: Callable[[dict], None]) -> Path:
    path = root / "meta" / "info.json"
    info = json.loads(path.read_text())
    change(info)
    path.write_text(json.dumps(info))
    return path


def copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lying")
    return {
        "state": write_lerobot_dataset(root / "state", episodes=2, frames=6, env_state_dim=None),
        "video": write_lerobot_dataset(root / "video", episodes=2, frames=6, cameras=("front",), env_state_dim=None),
    }


# ----------------------------------------------------------------------------------------------- info.json
INFO_CASES: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "fps_zero": ("state", lambda r: edit_info(r, lambda i: i.update(fps=0)), "'fps' is 0; expected the frame rate"),
    "fps_negative": (
        "state",
        lambda r: edit_info(r, lambda i: i.update(fps=-30)),
        "'fps' is -30; expected the frame rate of the recordings (a number > 0)",
    ),
    "fps_string": (
        "video",
        lambda r: edit_info(r, lambda i: i.update(fps="30")),
        "'fps' is '30'; expected the frame rate of the recordings (a number > 0)",
    ),
    "fps_missing": (
        "state",
        lambda r: edit_info(r, lambda i: i.pop("fps")),
        "no 'fps'; expected the frame rate of the recordings (a number > 0)",
    ),
    "action_dtype_string": (
        "state",
        lambda r: edit_info(r, lambda i: i["features"]["action"].update(dtype="string")),
        "'features.action.dtype' is 'string'; expected a numeric dtype (e.g. float32)",
    ),
}


@pytest.mark.parametrize("name", list(INFO_CASES))
def test_info_json_that_lies_is_one_line_naming_the_file_and_the_key(datasets, tmp_path, name):
    source, damage, message = INFO_CASES[name]
    root = copy(datasets[source], tmp_path / "ds")
    damage(root)
    with pytest.raises(ActlabError) as e:
        load_lerobot(LeRobotDatasetConfig(root=str(root)), tmp_path / "cache")
    assert str(e.value).startswith(f"{root}/meta/info.json: {message}")
    assert "\n" not in str(e.value)


def test_total_frames_that_disagree_with_the_data(datasets, tmp_path):
    root = copy(datasets["state"], tmp_path / "ds")
    edit_info(root, lambda i: i.update(total_frames=999))
    with pytest.raises(ActlabError) as e:
        load_lerobot(LeRobotDatasetConfig(root=str(root)), tmp_path / "cache")
    assert str(e.value) == (
        f"{root}/meta/info.json: 'total_frames' is 999 but data/ holds 12 frames; the dataset is inconsistent"
    )


def test_a_listed_camera_without_files(datasets, tmp_path):
    root = copy(datasets["video"], tmp_path / "ds")
    shutil.rmtree(root / "videos")
    with pytest.raises(ActlabError) as e:
        load_lerobot(LeRobotDatasetConfig(root=str(root)), tmp_path / "cache")
    assert str(e.value) == (
        f"{root}/meta/info.json lists camera 'observation.images.front' (dtype video) but {root}/videos holds no "
        "files of it; remove it from 'features' or pick other cameras with dataset.cameras"
    )
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())  # nothing decoded


def test_a_listed_camera_of_images_without_a_column(datasets, tmp_path):
    root = copy(datasets["state"], tmp_path / "ds")
    camera = {"dtype": "image", "shape": [32, 32, 3], "names": ["height", "width", "channels"]}
    edit_info(root, lambda i: i["features"].update({"observation.images.top": camera}))
    with pytest.raises(
        ActlabError, match=r"lists camera 'observation.images.top' \(dtype image\) but .* has no column"
    ):
        load_lerobot(LeRobotDatasetConfig(root=str(root)), tmp_path / "cache")


def test_an_honest_dataset_still_loads(datasets, tmp_path):
    store = load_lerobot(LeRobotDatasetConfig(root=str(datasets["video"])), tmp_path / "cache")
    assert store.fps == 10


# ----------------------------------------------------------------------------------------------- npy
def test_a_pickled_rollout_length_without_allow_pickle_is_one_line(tmp_path):
    root = write_npy(tmp_path / "npy", "folder", [6, 7], bimanual_frames([6, 7]))
    np.save(root / "rollout_length.npy", np.array([6, 7], dtype=object), allow_pickle=True)
    with pytest.raises(ActlabError) as e:
        load_npy(NpyDatasetConfig(root=str(root)), tmp_path / "cache")
    assert str(e.value) == (
        f"{root}/rollout_length.npy holds Python objects (loading it would run pickle, which can execute code); "
        "expected a 1-D integer array of episode lengths, e.g. np.save(path, np.array(lengths, dtype=np.int64))"
    )


def test_a_truncated_rollout_length_is_one_line(tmp_path):
    root = write_npy(tmp_path / "npy", "folder", [6, 7], bimanual_frames([6, 7]))
    path = root / "rollout_length.npy"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ActlabError, match=rf"^{path}: not a numeric .npy array \("):
        load_npy(NpyDatasetConfig(root=str(root)), tmp_path / "cache")


# ----------------------------------------------------------------------------------------------- checkpoints
def fake_checkpoint(folder: Path, hyperparameters: str | None) -> Path:
    """What register_checkpoint and load_run_config read of a training checkpoint folder."""
    folder.mkdir(parents=True)
    (folder / "training_state.pt").write_bytes(b"")
    if hyperparameters is not None:
        (folder / "hyperparameters.json").write_text(hyperparameters)
    return folder


HYPERPARAMETER_CASES = {
    "corrupt": ('{"model": {', "cannot be read as JSON (Expecting property name enclosed in double quotes: "),
    "list": ('[{"model": {}}]', "holds a JSON list"),
    "missing": (None, None),
    "pipe": ("fifo", "a named pipe, not a regular file"),
}


@pytest.mark.parametrize("name", list(HYPERPARAMETER_CASES))
def test_hyperparameters_that_lie_under_resume_are_one_line(tmp_path, name):
    text, message = HYPERPARAMETER_CASES[name]
    folder = fake_checkpoint(tmp_path / "last", None if text in (None, "fifo") else text)
    path = folder / "hyperparameters.json"
    if text == "fifo":
        os.mkfifo(path)
    with pytest.raises(ActlabError) as e:
        load_run_config(folder)
    expected = f"{path}: {message or 'missing'}"
    assert str(e.value).startswith(expected), str(e.value)
    assert str(e.value).endswith(
        "it is damaged or not an actlab checkpoint: resume from another run directory or start afresh"
    )


@pytest.mark.parametrize("name", list(HYPERPARAMETER_CASES))
def test_hyperparameters_that_lie_under_checkpoint_are_one_line(tmp_path, name):
    text, message = HYPERPARAMETER_CASES[name]
    folder = fake_checkpoint(tmp_path / "ckpt", None if text in (None, "fifo") else text)
    path = folder / "hyperparameters.json"
    if text == "fifo":
        os.mkfifo(path)
    with pytest.raises(ActlabError) as e:
        register_checkpoint(str(folder))
    if message is None:
        assert str(e.value) == (
            f"{path} is missing: {folder} is an actlab training checkpoint without the settings of its run (the "
            "checkpoint is damaged); use another checkpoint of the run"
        )
    else:
        assert str(e.value).startswith(f"{path}: {message}"), str(e.value)


def test_a_bare_policy_folder_without_hyperparameters_is_legitimate(tmp_path):
    folder = tmp_path / "lerobot_policy"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"type": "act", "dim_model": 64}))
    register_checkpoint(str(folder))  # only its architecture: no error


def test_a_named_pipe_as_config_json_of_a_bare_folder_is_one_line(tmp_path):
    folder = tmp_path / "policy"
    folder.mkdir()
    os.mkfifo(folder / "config.json")
    with pytest.raises(ActlabError, match=r"config.json: a named pipe, not a regular file; expected a policy config"):
        register_checkpoint(str(folder))


# ----------------------------------------------------------------------------------------------- command lines
@dataclass
class Case:
    argv: list[str]  # after the interpreter
    message: str  # the exact line after "error: "
    keeps_run_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)


def run_case(case: Case, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "ACTLAB_DATA_DIR": str(cwd / "data"), **case.env}
    # a named pipe that is opened blocks for ever: the timeout turns that hang into a failure
    return subprocess.run([sys.executable, *case.argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def train_case(*args: str, message: str, keeps_run_dir: Path | None = None) -> Case:
    return Case([str(REPO / "train.py"), *COMMON, *args], message, keeps_run_dir)


def command(entry_point: str, *args: str, message: str) -> Case:
    """The command behind a console script (pyproject.toml's `module:function`), as the script runs it."""
    module, function = entry_point.split(":")
    return Case(["-c", f"import sys; from {module} import {function}; sys.argv[0] = 'x'; {function}()", *args], message)


@pytest.fixture(scope="module")
def finished_run(datasets, tmp_path_factory) -> Path:
    from actlab.training.train import train

    root = tmp_path_factory.mktemp("run")
    cfg = compose_train([f"dataset.root={datasets['state']}", *COMMON, "checkpoint.save_freq=2"], root)
    train(cfg)
    return Path(cfg.paths.output_dir)


def resumed(run: Path, case: Path, damage: Callable[[Path], object], state: Path) -> tuple[Path, list[str]]:
    copied = copy(run, case / "run")
    damage(copied / "checkpoints" / "last")
    return copied, [f"dataset.root={state}", f"resume={copied}", "trainer.max_steps=4"]


def pipe_in_place_of(name: str) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        (folder / name).unlink()
        os.mkfifo(folder / name)

    return damage


DAMAGED = "it is damaged or not an actlab checkpoint: resume from another run directory or start afresh"


def cli_cases(datasets: dict[str, Path], run: Path, case: Path, name: str) -> Case:
    state, video = datasets["state"], datasets["video"]
    if name == "train_fps_zero":
        root = copy(state, case / "ds")
        edit_info(root, lambda i: i.update(fps=0))
        return train_case(
            f"dataset.root={root}",
            message=f"{root}/meta/info.json: 'fps' is 0; expected the frame rate of the recordings (a number > 0)",
        )
    if name == "train_total_frames":
        root = copy(state, case / "ds")
        edit_info(root, lambda i: i.update(total_frames=7))
        return train_case(
            f"dataset.root={root}",
            message=f"{root}/meta/info.json: 'total_frames' is 7 but data/ holds 12 frames; the dataset is "
            "inconsistent",
        )
    if name == "train_camera_without_files":
        root = copy(video, case / "ds")
        shutil.rmtree(root / "videos")
        return train_case(
            f"dataset.root={root}",
            message=f"{root}/meta/info.json lists camera 'observation.images.front' (dtype video) but {root}/videos "
            "holds no files of it; remove it from 'features' or pick other cameras with dataset.cameras",
        )
    if name == "train_action_dtype_string":
        root = copy(state, case / "ds")
        edit_info(root, lambda i: i["features"]["action"].update(dtype="string"))
        return train_case(
            f"dataset.root={root}",
            message=f"{root}/meta/info.json: 'features.action.dtype' is 'string'; expected a numeric dtype "
            "(e.g. float32)",
        )
    if name == "train_npy_pickled_lengths":
        root = write_npy(case / "npy", "folder", [6, 7], bimanual_frames([6, 7]))
        np.save(root / "rollout_length.npy", np.array([6, 7], dtype=object), allow_pickle=True)
        return train_case(
            "dataset=npy",
            f"dataset.root={root}",
            message=f"{root}/rollout_length.npy holds Python objects (loading it would run pickle, which can "
            "execute code); expected a 1-D integer array of episode lengths, e.g. np.save(path, "
            "np.array(lengths, dtype=np.int64))",
        )
    if name.startswith("resume_"):
        kind = name.removeprefix("resume_")
        damage, message = {
            "corrupt_hyperparameters": (
                lambda f: (f / "hyperparameters.json").write_text("{"),
                "hyperparameters.json: cannot be read as JSON (Expecting property name enclosed in double quotes: "
                f"line 1 column 2 (char 1)); {DAMAGED}",
            ),
            "list_hyperparameters": (
                lambda f: (f / "hyperparameters.json").write_text("[1, 2]"),
                f"hyperparameters.json: holds a JSON list; expected an object of the run's settings; {DAMAGED}",
            ),
            "missing_hyperparameters": (
                lambda f: (f / "hyperparameters.json").unlink(),
                f"hyperparameters.json: missing; {DAMAGED}",
            ),
            "pipe_hyperparameters": (
                pipe_in_place_of("hyperparameters.json"),
                f"hyperparameters.json: a named pipe, not a regular file; {DAMAGED}",
            ),
            "pipe_config": (
                pipe_in_place_of("config.json"),
                f"config.json: a named pipe, not a regular file; {DAMAGED}",
            ),
            "pipe_weights": (
                pipe_in_place_of("model.safetensors"),
                f"model.safetensors: a named pipe, not a regular file; {DAMAGED}",
            ),
        }[kind]
        copied, args = resumed(run, case, damage, state)
        last = copied / "checkpoints" / "last"
        return train_case(*args, message=f"{last}/{message}", keeps_run_dir=copied)
    # actlab-eval and actlab-serve with checkpoint=
    entry_point = "actlab.eval.main:main" if name.startswith("eval_") else "actlab.deploy.main:serve_main"
    folder = copy(run / "checkpoints" / "final", case / "ckpt")
    hyperparameters = folder / "hyperparameters.json"
    if name.endswith("corrupt_hyperparameters"):
        hyperparameters.write_text("not json")
        message = (
            f"{hyperparameters}: cannot be read as JSON (Expecting value: line 1 column 1 (char 0)); the "
            "checkpoint is damaged"
        )
    elif name.endswith("list_hyperparameters"):
        hyperparameters.write_text("[]")
        message = (
            f"{hyperparameters}: holds a JSON list; expected an object of the training run's settings; the "
            "checkpoint is damaged"
        )
    elif name.endswith("missing_hyperparameters"):
        hyperparameters.unlink()
        message = (
            f"{hyperparameters} is missing: {folder} is an actlab training checkpoint without the settings "
            "of its run (the checkpoint is damaged); use another checkpoint of the run"
        )
    else:
        pipe_in_place_of("hyperparameters.json")(folder)
        message = f"{hyperparameters}: a named pipe, not a regular file; expected the training run's settings (JSON)"
    return command(entry_point, f"checkpoint={folder}", message=message)


CLI_CASES = [
    "train_fps_zero",
    "train_total_frames",
    "train_camera_without_files",
    "train_action_dtype_string",
    "train_npy_pickled_lengths",
    "resume_corrupt_hyperparameters",
    "resume_list_hyperparameters",
    "resume_missing_hyperparameters",
    "resume_pipe_hyperparameters",
    "resume_pipe_config",
    "resume_pipe_weights",
    "eval_corrupt_hyperparameters",
    "eval_list_hyperparameters",
    "eval_missing_hyperparameters",
    "eval_pipe_hyperparameters",
    "serve_corrupt_hyperparameters",
    "serve_list_hyperparameters",
    "serve_pipe_hyperparameters",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", CLI_CASES)
def test_lying_input_on_the_command_line_is_one_line(datasets, finished_run, tmp_path, name):
    case = cli_cases(datasets, finished_run, tmp_path, name)
    result = run_case(case, tmp_path)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-3000:]
    assert result.returncode == 2, output[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1] == f"error: {case.message}", output[-3000:]
    if case.keeps_run_dir is not None:
        log = (case.keeps_run_dir / "train.log").read_text().splitlines()
        assert log[-1].endswith(f"[ERROR] error: {case.message}")
    assert not (tmp_path / "outputs").exists()  # no run directory, not even an empty date folder
