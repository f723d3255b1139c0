"""Crash safety: folders are published atomically (flushed, then swapped in one step), what a killed
process leaves behind is cleaned up at the next start, and a training run SIGKILLed at random moments
resumes to the same weights as an uninterrupted one (`make bench-kill` does the same with 20 kills)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import actlab.io as actlab_io
from actlab.config.resolvers import has_last_checkpoint
from actlab.io import atomic_dir, remove_stale


def write_folder(path: Path, text: str) -> None:
    path.mkdir(parents=True)
    (path / "a.txt").write_text(text)
    (path / "sub").mkdir()
    (path / "sub" / "b.txt").write_text(text)


def test_atomic_dir_publishes_a_complete_folder_and_swaps_an_existing_one(tmp_path):
    target = tmp_path / "last"
    write_folder(target, "old")
    with atomic_dir(target, replace=True) as tmp:
        (tmp / "a.txt").write_text("new")
        assert (target / "a.txt").read_text() == "old"  # readers see the old folder until the swap
    assert (target / "a.txt").read_text() == "new" and not (target / "sub").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]  # no temporary folder left


def test_a_failed_write_leaves_the_target_as_it_was(tmp_path):
    target = tmp_path / "last"
    write_folder(target, "old")
    with pytest.raises(RuntimeError), atomic_dir(target, replace=True) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("killed")
    assert (target / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    with pytest.raises(FileExistsError), atomic_dir(target) as tmp:  # replace=False never overwrites
        (tmp / "a.txt").write_text("new")
    assert (target / "a.txt").read_text() == "old"


def test_every_file_and_folder_is_fsynced_before_the_rename_that_publishes_them(tmp_path, monkeypatch):
    events = []
    real_fsync, real_rename = os.fsync, Path.rename

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(self, target):
        events.append(("rename", str(self)))
        return real_rename(self, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(Path, "rename", rename)
    with atomic_dir(tmp_path / "step_5") as tmp:
        (tmp / "sub").mkdir()
        (tmp / "model.safetensors").write_bytes(b"x" * 100)
        (tmp / "sub" / "b.txt").write_text("b")
    publish = events.index(("rename", str(tmp)))
    flushed = {path for kind, path in events[:publish] if kind == "fsync"}
    assert flushed == {str(tmp), str(tmp / "sub"), str(tmp / "model.safetensors"), str(tmp / "sub" / "b.txt")}
    assert events[publish + 1 :] == [("fsync", str(tmp_path))]  # the rename itself is made durable


def test_without_an_atomic_exchange_a_kill_between_the_two_renames_is_recovered(tmp_path, monkeypatch):
    checkpoints = tmp_path / "run" / "checkpoints"
    write_folder(checkpoints / "last", "old")
    monkeypatch.setattr(actlab_io, "_exchange", lambda a, b: False)  # e.g. not Linux

    def die_after_the_first_rename(new, target):  # what a SIGKILL between the renames leaves
        target.rename(actlab_io.temp_name(target, "old"))
        raise SystemExit("killed")

    monkeypatch.setattr(actlab_io, "_replace", die_after_the_first_rename)
    with pytest.raises(SystemExit), atomic_dir(checkpoints / "last", replace=True) as tmp:
        (tmp / "a.txt").write_text("new")
    assert not (checkpoints / "last").exists()
    (checkpoints / f".last.old-{os.getpid()}" / "training_state.pt").write_text("")
    assert has_last_checkpoint(tmp_path / "run")  # so `resume=` still finds the run
    remove_stale(checkpoints)
    assert (checkpoints / "last" / "a.txt").read_text() == "old"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last"]


def test_stale_entries_of_dead_processes_are_removed_and_those_of_live_ones_kept(tmp_path):
    dead, live = 2**22 + 12345, os.getppid()  # beyond pid_max: never running
    for name in (f".step_5.tmp-{dead}", f".last.old-{dead}", f".step_9.tmp-{live}", f".last.tmp-{os.getpid()}"):
        (tmp_path / name).mkdir()
    (tmp_path / "last").mkdir()
    (tmp_path / ".hidden").mkdir()  # not ours
    removed = remove_stale(tmp_path)
    stale = [f".step_5.tmp-{dead}", f".last.old-{dead}", f".last.tmp-{os.getpid()}"]
    assert sorted(p.name for p in removed) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", f".step_9.tmp-{live}", "last"]


@pytest.mark.slow
def test_a_run_killed_at_random_moments_resumes_to_the_uninterrupted_weights(tmp_path):
    from bench.kill_resume import kill_and_resume

    report = kill_and_resume(tmp_path, kills=4, max_steps=200, save_freq=5, seed=1)
    assert report.kills == 4
    assert report.unreadable == [] and report.resume_failures == [] and report.leftovers_not_cleaned == []
    assert report.last_missing == 0 and report.checks > 0
    assert report.identical is True
