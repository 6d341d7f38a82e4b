"""train(tiny) end to end; resume; and 2-process DDP, whose gathered loss trains like one process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dlshared.checkpoint import load_resume_state
from dlshared.processes import kill_when, run_distributed, torchrun
from dlshared.training import Run
from multimodal.scenes import ATTRIBUTES
from multimodal.train import train

from .conftest import tiny_config


def test_tiny_run_trains_and_reports_every_metric(tiny_run):
    history = tiny_run["history"]
    assert [h["epoch"] for h in history] == [1, 2] and tiny_run["steps"] == 2 * (512 // 64)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert set(tiny_run["test"]) == {"seen", "unseen"}
    for split in tiny_run["test"].values():
        assert set(split["zero_shot"]) == set(ATTRIBUTES)
        assert 0 <= split["text_to_image_r1"] <= split["text_to_image_r5"] <= split["text_to_image_r10"] <= 1
    weights = load_file(Path(tiny_run["run_dir"]) / "model.safetensors")
    assert "logit_scale" in weights and "token_embedding.weight" in weights
    for picture in ("curves.png", "zero_shot.png", "search.png"):  # what the run leaves to look at
        assert (Path(tiny_run["run_dir"]) / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", picture


class Interrupted(Exception):
    """Stands for a kill right after a checkpoint."""


def test_resume_after_the_first_epoch_ends_exactly_like_an_uninterrupted_run(tiny_run, tmp_path, monkeypatch):
    # killed right after the epoch-1 checkpoint, with the run's own epochs (the learning-rate schedule spans them)
    checkpoint = Run.checkpoint

    def checkpoint_then_stop(self, *args, **progress):
        checkpoint(self, *args, **progress)
        raise Interrupted

    monkeypatch.setattr(Run, "checkpoint", checkpoint_then_stop)
    with pytest.raises(Interrupted):
        train(tiny_config(tmp_path, name="halves", device="cpu"))
    monkeypatch.setattr(Run, "checkpoint", checkpoint)
    resumed = train(tiny_config(tmp_path, name="halves", resume=True, device="cpu"))
    assert resumed["history"] == tiny_run["history"] and resumed["test"] == tiny_run["test"]
    a = load_file(Path(tiny_run["run_dir"]) / "model.safetensors")
    b = load_file(tmp_path / "multimodal" / "halves" / "model.safetensors")
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> list[dict]:
    """The tiny preset on 1,024 scenes for 4 epochs under 2-process gloo DDP: each rank's metrics."""
    out = tmp_path_factory.mktemp("runs")
    return run_distributed(train, tiny_config(out, name="ddp", device="cpu", train_scenes=1024, epochs=4))


def test_two_processes_with_gathered_features_train_like_one_process_on_the_global_batch(ddp_run, tmp_path):
    # each process embeds half of every batch of 64; the loss is over all 64 pairs, as in one process
    single = train(tiny_config(tmp_path, name="single", device="cpu", train_scenes=1024, epochs=4))
    rank0, rank1 = ddp_run
    assert rank0["processes"] == rank1["processes"] == 2 and rank0["steps"] == single["steps"]
    for ddp, one in zip(rank0["history"], single["history"], strict=True):
        assert abs(ddp["train_loss"] - one["train_loss"]) < 1e-4, (ddp, one)
        assert abs(ddp["val_loss"] - one["val_loss"]) < 1e-4, (ddp, one)
    assert rank1["history"] == rank0["history"]  # every process reports the same figures
    # (not the weights one by one: the attention's key bias gets a zero gradient up to rounding, which Adam's
    # normalised step turns into updates of either sign; the validation loss above is the models' behaviour)


@pytest.mark.slow  # real processes, killed: ~40 s, mostly starting torch in 2 x 3 processes
def test_two_process_ddp_killed_and_resumed_ends_exactly_like_an_uninterrupted_run(ddp_run, tmp_path):
    flags = ["--preset", "tiny", "--train-scenes", "1024", "--epochs", "4", "--device", "cpu", "--out", str(tmp_path)]
    straight = ddp_run[0]  # the same run, uninterrupted
    proc = torchrun("multimodal", ["train", *flags, "--name", "killed"])
    resume_file = tmp_path / "multimodal" / "killed" / "resume.pt"
    # the launcher and both ranks, mid-run: once the first epoch's checkpoint is complete
    kill_when(proc, lambda: resume_file.exists() and load_resume_state(resume_file)["epoch"] >= 1)
    assert not (resume_file.parent / "metrics.json").exists(), "the run finished before it was killed"

    resumed = torchrun("multimodal", ["train", *flags, "--name", "killed", "--resume"])
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()[-2000:]
    metrics = json.loads((resume_file.parent / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["processes"] == 2 and metrics["history"] == straight["history"]
    assert metrics["test"] == straight["test"]
    a = load_file(Path(straight["run_dir"]) / "model.safetensors")
    b = load_file(resume_file.parent / "model.safetensors")
    for name in a:
        assert torch.equal(a[name], b[name]), name
