"""The recipes stay true (issue 23, item 5): each recipe run has a name of its own, so the docs'
`RUN=$(ls -d outputs/*/*_quickstart | tail -1)` picks the `make train` run; `actlab-eval checkpoint=<run dir>`
takes the run's `checkpoints/best/`; what the recipes write lands under outputs/ (git-ignored); a G1-shaped
dataset is made offline with one command; the training log names the dataset by its root and says which
precision `auto` chose."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from actlab.config.checkpoint import run_checkpoint
from actlab.errors import ActlabError
from tests.test_docs import COMMANDS, DOC_FILES, ROOT, hydra_overrides

QUICKSTART_RUN = "outputs/*/*_quickstart"  # what the docs' RUN=$(ls -d ... | tail -1) matches


def train_commands_named_quickstart() -> list:
    """The docs' training commands that run (not --cfg, not a sweep) under the task name `quickstart`."""
    found = []
    for command in COMMANDS:
        if command.program != "train" or {"--cfg", "-c", "-m", "--multirun", "--help"} & set(command.args):
            continue
        overrides = dict(o.split("=", 1) for o in hydra_overrides(command.args) if "=" in o)
        if "hparams_search" in overrides:  # a sweep: its jobs go to multirun/
            continue
        if (
            overrides.get("task_name", "quickstart" if overrides.get("experiment") == "quickstart" else "")
            == "quickstart"
        ):
            found.append(command)
    return found


def test_only_make_train_runs_are_named_quickstart():
    others = [
        str(c)
        for c in train_commands_named_quickstart()
        if not {a.split("=", 1)[0] for a in hydra_overrides(c.args)} <= {"experiment", "seed"}
    ]
    assert not others, f"recipe runs that `ls -d {QUICKSTART_RUN} | tail -1` would take for `make train`'s: {others}"


def test_recipes_write_under_outputs_which_git_ignores():
    written = []
    for command in COMMANDS:
        if command.program == "actlab-export":
            written.append((command.where, [a for a in command.args if not a.startswith("-") and "=" not in a][1]))
    for path in DOC_FILES:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            written += [(f"{path.name}:{n}", m) for m in re.findall(r"sqlite:///([\w./-]+)", line)]
    assert written
    for where, out in written:
        if out.startswith("/path/") or out.startswith("/tmp/"):
            continue  # the reader's own folders
        assert out.startswith("outputs/"), f"{where}: {out} lands outside outputs/"
        ignored = subprocess.run(["git", "check-ignore", "-q", out], cwd=ROOT)
        assert ignored.returncode == 0, f"{where}: {out} is not ignored by git"


def test_a_run_directory_as_checkpoint_takes_its_best(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints" / "last").mkdir(parents=True)
    with pytest.raises(
        ActlabError, match=r"a run directory without checkpoints/best; pass one of its checkpoints: .*/last"
    ):
        run_checkpoint([f"checkpoint={run}"])
    (run / "checkpoints" / "best").mkdir()
    argv = ["env.final_eval_episodes=2", f"checkpoint={run}", "eval.videos=0"]
    assert run_checkpoint(argv) == ["env.final_eval_episodes=2", f"checkpoint={run}/checkpoints/best", "eval.videos=0"]
    assert f"checkpoint={run} is a run directory: using its best checkpoint, {run}/checkpoints/best" in (
        capsys.readouterr().err
    )
    best = [f"checkpoint={run}/checkpoints/best"]
    assert run_checkpoint(best) == best and run_checkpoint(["eval.videos=0"]) == ["eval.videos=0"]


def test_one_command_makes_a_g1_shaped_dataset_that_the_g1_preset_reads(tmp_path, capsys):
    from actlab.data.formats import load_store
    from actlab.data.synthetic import main
    from actlab.sim.collect import dataset_config
    from tests.conftest import G1_CAMERAS, compose_train

    out = tmp_path / "g1_synthetic"
    main(["g1", str(out), "--episodes", "2", "--frames", "5", "--image-size", "24x32", "--png"])
    assert f"{out}: 2 episodes x 5 frames of random g1 data" in capsys.readouterr().out
    cfg = compose_train(["dataset=g1", f"dataset.root={out}"], tmp_path)
    store = load_store(dataset_config(cfg), tmp_path / "cache")
    assert [k for k in store.features if k.startswith("observation.images.")] == [
        f"observation.images.{c}" for c in G1_CAMERAS
    ]
    assert store.features["observation.state"].shape == store.features["action"].shape == (28,)
    assert store.fps == 30 and store.num_episodes == 2
    assert store.name == "g1_synthetic"  # named by its root, not by the preset's hub id
    with pytest.raises(SystemExit) as e:
        main(["g1", str(out)])
    assert e.value.code == 2 and "already exists" in capsys.readouterr().err


def test_the_synthetic_g1_command_is_documented():
    text = (ROOT / "docs" / "datasets.md").read_text()
    assert "python -m actlab.data.synthetic g1 " in text


# --- the recipes in order: a quickstart-named run, the fine-tuning recipe, then RUN=$(ls ...) and eval ------


def doc_finetune_overrides() -> list[str]:
    """The docs' fine-tuning recipe of the quickstart run (a train command with experiment=quickstart and
    init_from=) as written, but for init_from; the other init_from= commands fine-tune on robot datasets."""
    finetunes = [c for c in COMMANDS if c.program == "train" and any(a.startswith("init_from=") for a in c.args)]
    (command,) = [c for c in finetunes if "experiment=quickstart" in c.args]
    return [a for a in hydra_overrides(command.args) if not a.startswith("init_from=")]


TINY = [
    "env=none",
    "optimized_metric=null",
    "model=tiny",
    "dataset.batch_size=4",
    "trainer.max_steps=2",
    "checkpoint.save_freq=2",
    "trainer.val_check_interval=2",
    "trainer.limit_val_batches=1",
    "trainer.enable_progress_bar=false",
    "encoder.pretrained=null",
]


def run(cwd: Path, *args: str, program: str = "train.py") -> str:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(ROOT / program)] if program.endswith(".py") else [program]
    result = subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result.stdout + result.stderr


@pytest.mark.slow
def test_recipes_in_order_each_pick_the_run_they_mean(tmp_path):
    from tests.conftest import write_lerobot_dataset

    data = write_lerobot_dataset(tmp_path / "data" / "lift_like", episodes=4, frames=15)
    # `make train` (experiment=quickstart), on a small dataset instead of Lift demos collected in the simulator
    text = run(tmp_path, "experiment=quickstart", f"dataset.root={data}", "trainer.precision=auto", *TINY)
    assert f"Dataset: {data.name}" in text and f"Root: {data}" in text
    assert re.search(
        r"precision 32-true from trainer.precision=auto|precision bf16-mixed from trainer.precision=auto", text
    )
    (quickstart,) = list(tmp_path.glob(QUICKSTART_RUN))
    # the fine-tuning recipe, as the docs write it, on the same small dataset
    finetune = [*doc_finetune_overrides(), f"init_from={quickstart}/checkpoints/best", f"dataset.root={data}"]
    run(tmp_path, *finetune, *TINY)
    picked = subprocess.run(
        f"ls -d {QUICKSTART_RUN} | tail -1", shell=True, cwd=tmp_path, capture_output=True, text=True
    ).stdout.strip()
    assert (tmp_path / picked).resolve() == quickstart.resolve()
    # actlab-eval pointed at the run directory: its best checkpoint, said so
    eval_bin = Path(sys.executable).parent / "actlab-eval"
    text = run(tmp_path, f"checkpoint={picked}", "eval.mode=dataset", "eval.video=false", program=str(eval_bin))
    assert f"checkpoint={picked} is a run directory: using its best checkpoint, {picked}/checkpoints/best" in text
