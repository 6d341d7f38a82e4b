"""`train --resume`: the run's own config.json, only the flags typed on top; and kill + resume under 2-process DDP."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from classifier.cli import main
from classifier.config import TrainConfig
from dlshared.checkpoint import load_resume_state
from dlshared.configs import typed_fields
from dlshared.processes import kill_when, torchrun
from dlshared.testing import assert_one_line_error


@pytest.fixture
def copied_run(tiny_run, tmp_path) -> Path:
    """The session's finished tiny run, copied to tmp/classifier/tiny (resuming writes into it)."""
    return Path(shutil.copytree(tiny_run["run_dir"], tmp_path / "classifier" / "tiny"))


def test_typed_fields_are_the_flags_on_the_command_line():
    args = ["--preset", "tiny", "--max-train-samples", "9", "--epochs=2", "--no-augment", "--widths", "8", "8"]
    assert typed_fields(args, TrainConfig) == {"max_train_samples", "epochs", "augment", "widths"}


def test_resume_continues_under_the_runs_own_config_not_the_default_preset(tiny_run, copied_run, tmp_path, capsys):
    # no --preset: the default (quick) has other widths and 15 epochs; the run's config.json wins
    main(["train", "--resume", "--name", "tiny", "--out", str(tmp_path), "--device", "cpu"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["epochs"] == 3 and printed["steps"] == tiny_run["steps"]  # nothing left to train
    assert printed["test_accuracy"] == tiny_run["test_accuracy"]
    saved = json.loads((copied_run / "config.json").read_text(encoding="utf-8"))
    assert saved["widths"] == [16, 32] and saved["max_train_samples"] == 512 and saved["device"] == "cpu"


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--widths", "8", "8"], "--widths (8, 8)"),
        (["--backbone", "resnet18"], "--backbone resnet18"),
        (["--epochs", "5"], "--epochs 5"),  # the schedule was laid out for the epochs the run started with
        (["--preset", "quick", "--lr", "0.1"], "--lr 0.1"),
    ],
)
def test_resume_refuses_flags_that_change_what_the_run_trains(copied_run, tmp_path, capsys, flags, named):
    before = {p.name: p.read_bytes() for p in copied_run.iterdir() if p.is_file()}
    err = assert_one_line_error(main, ["train", "--resume", "--name", "tiny", "--out", str(tmp_path), *flags], capsys)
    assert named in err and str(copied_run) in err and "start a new run" in err
    assert {p.name: p.read_bytes() for p in copied_run.iterdir() if p.is_file()} == before


@pytest.mark.slow  # two torchrun jobs, about a minute on 2 cores: mostly six Python processes importing torch
def test_kill_and_resume_under_two_process_ddp_ends_like_an_uninterrupted_run(ddp_run, tmp_path):
    # the tiny preset under torchrun, as ddp_run trained it with run_distributed, killed after its first epoch
    args = ["train", "--preset", "tiny", "--device", "cpu", "--out", str(tmp_path), "--name", "killed"]
    proc = torchrun("classifier", args)
    resume_file = tmp_path / "classifier" / "killed" / "resume.pt"
    # the launcher and both ranks, mid-run: once the first epoch's checkpoint is complete
    kill_when(proc, lambda: resume_file.exists() and load_resume_state(resume_file)["epoch"] >= 1)
    assert not (resume_file.parent / "metrics.json").exists(), "the run finished before it was killed"
    assert 1 <= load_resume_state(resume_file)["epoch"] < 3

    # resumed as a user would: --resume and the name; the run's config.json supplies the rest
    resumed = torchrun("classifier", ["train", "--resume", "--name", "killed", "--out", str(tmp_path)])
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()[-2000:]
    straight = ddp_run[0]
    metrics = json.loads((resume_file.parent / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["processes"] == straight["processes"] == 2
    assert metrics["history"] == straight["history"]
    assert metrics["test_loss"] == straight["test_loss"]
    assert metrics["test"]["confusion_matrix"] == straight["test"]["confusion_matrix"]
    weights = load_file(resume_file.parent / "model.safetensors")
    for name, tensor in load_file(Path(straight["run_dir"]) / "model.safetensors").items():
        assert torch.equal(weights[name], tensor), name
