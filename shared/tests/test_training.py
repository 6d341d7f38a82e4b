"""Run folders that belong to one run, and the `start_run` / `Run` bookkeeping every training loop uses."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dlshared.checkpoint import RESUME_NAME, atomic_path
from dlshared.cli import UserError
from dlshared.processes import resume_rng_selftest, run_distributed
from dlshared.runs import RunLock, discard_unfinished_runs, make_run_dir, resolve_run_dir
from dlshared.testing import reset_accelerate
from dlshared.training import epochs_for, start_run


@dataclasses.dataclass
class Options:
    out: Path
    name: str | None = None
    resume: bool = False
    overwrite: bool = False
    device: str = "cpu"
    mixed_precision: str = "no"
    progress: bool = False


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path):
    folders = {make_run_dir("proj", root=tmp_path) for _ in range(3)}
    assert len(folders) == 3 and all(f.is_dir() for f in folders)


def test_a_named_folder_is_refused_unless_resumed_or_overwritten(tmp_path):
    run = resolve_run_dir("proj", tmp_path, "named")
    (run / "config.json").write_text("{}", encoding="utf-8")
    (run / "notes.txt").write_text("the user's own file", encoding="utf-8")
    with pytest.raises(UserError, match="already holds a run: add --resume .* or --overwrite"):
        resolve_run_dir("proj", tmp_path, "named")
    with pytest.raises(UserError, match="give one of them"):
        resolve_run_dir("proj", tmp_path, "named", resume=True, overwrite=True)
    replaced = resolve_run_dir("proj", tmp_path, "named", overwrite=True)
    assert replaced == run and list(replaced.iterdir()) == []


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(tmp_path):
    folder = tmp_path / "proj" / "mine"
    folder.mkdir(parents=True)
    (folder / "thesis.tex").write_text("years of work", encoding="utf-8")
    with pytest.raises(UserError, match="not a run folder"):
        resolve_run_dir("proj", tmp_path, "mine", overwrite=True)
    assert (folder / "thesis.tex").read_text(encoding="utf-8") == "years of work"


@pytest.mark.parametrize("name", ["../escape", "/abs", "a/b", ".hidden", ".."])
def test_names_that_would_leave_the_runs_folder_are_refused(tmp_path, name):
    with pytest.raises(UserError, match="one folder, no path"):
        resolve_run_dir("proj", tmp_path, name)
    assert not (tmp_path / "escape").exists()


def test_a_locked_run_folder_is_refused_to_a_second_process(tmp_path):
    run = resolve_run_dir("proj", tmp_path, "busy")
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from dlshared.runs import RunLock; RunLock({str(run)!r}).acquire(); input()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not RunLock.held(run):
            assert holder.poll() is None and time.monotonic() < deadline, "the holder process never took the lock"
            time.sleep(0.05)
        with pytest.raises(UserError, match="being trained by another process"):
            RunLock(run).acquire()
    finally:
        holder.communicate(b"\n", timeout=60)
    assert not RunLock.held(run)  # the holder exited: the OS dropped its lock


def test_a_run_that_stopped_with_an_exception_resumes_in_the_same_process(tmp_path):
    run = resolve_run_dir("proj", tmp_path, "interrupted")
    stale = RunLock(run).acquire()  # what a train() that raised (a KeyboardInterrupt) leaves in its process
    again = RunLock(run).acquire()  # the resuming train() in the same process takes it over
    assert stale not in RunLock.held_here and again in RunLock.held_here
    again.release()


@pytest.mark.parametrize(
    ("epochs", "min_steps", "steps_per_epoch", "expected"),
    [(7, 1000, 156, 7), (7, 1000, 12, 84), (7, 0, 12, 7), (3, 10, 10, 3), (1, 11, 10, 2)],
)
def test_small_data_sets_get_enough_optimizer_steps(epochs, min_steps, steps_per_epoch, expected):
    assert epochs_for(epochs, min_steps, steps_per_epoch) == expected


def test_a_run_stopped_before_its_first_checkpoint_leaves_no_folder(tmp_path):
    alone = resolve_run_dir("lonely", tmp_path / "new-root")  # made runs/ and runs/lonely too: all go
    fresh = resolve_run_dir("proj", tmp_path)
    (fresh / "config.json").write_text("{}", encoding="utf-8")
    (fresh / "logs").mkdir()
    (fresh / "logs" / "events.out.tfevents.123.host").write_bytes(b"")
    finished = resolve_run_dir("proj", tmp_path, "finished")
    (finished / "metrics.json").write_text("{}", encoding="utf-8")
    staged = resolve_run_dir("proj", tmp_path, "staged")  # a multi-stage run with one stage done
    (staged / "base").mkdir()
    (staged / "base" / "model.safetensors").write_bytes(b"")
    discard_unfinished_runs()
    assert not fresh.exists() and finished.is_dir() and staged.is_dir()
    assert not alone.exists() and not (tmp_path / "new-root").exists()


def test_resume_removes_the_temporary_files_a_killed_save_left(tmp_path):
    run = start_run("proj", Options(tmp_path, "r"))
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run.checkpoint(model, optimizer, step=3)
    run.finish({}, "done")
    orphan = run.dir / f".{RESUME_NAME}.abc123.tmp"  # what kill -9 inside atomic_path leaves
    orphan.write_bytes(b"half a file")
    reset_accelerate()
    resumed = start_run("proj", Options(tmp_path, "r", resume=True))
    assert not orphan.exists()
    assert resumed.resume(model, optimizer)["step"] == 3
    resumed.finish({}, "done")


def test_a_truncated_resume_file_is_one_clear_error(tmp_path):
    run = start_run("proj", Options(tmp_path, "r"))
    with atomic_path(run.dir / RESUME_NAME) as tmp:
        tmp.write_bytes(b"PK\x03\x04 truncated")
    run.finish({}, "done")
    reset_accelerate()
    resumed = start_run("proj", Options(tmp_path, "r", resume=True))
    model = torch.nn.Linear(2, 2)
    with pytest.raises(UserError, match="resume.pt cannot be read"):
        resumed.resume(model, torch.optim.SGD(model.parameters(), lr=0.1))


def test_every_rank_resumes_its_own_rng_state(tmp_path):
    (save0, resume0), (save1, resume1) = run_distributed(resume_rng_selftest, tmp_path)
    assert save0 == resume0 and save1 == resume1  # each rank continues its own random stream
    assert save0 != save1


@pytest.mark.parametrize(
    "name, expected",
    [("cat", "cat"), ("../../etc/passwd", "_.._etc_passwd"), ("/tmp/x", "_tmp_x"), ("a b", "a_b"), ("..", "item")],
)
def test_names_from_artefacts_become_harmless_file_names(name, expected):
    from dlshared.outputs import safe_filename

    assert safe_filename(name) == expected
