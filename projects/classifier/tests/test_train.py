"""Training end to end: files written, loss falls, eval agrees, resume after a kill, ImageFolder data, DDP."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from classifier.artifacts import load_torch_model
from classifier.cli import main
from classifier.config import PRESETS
from classifier.train import train
from dlshared.checkpoint import load_resume_state
from dlshared.processes import kill_when
from dlshared.testing import OFFLINE_ENV


def test_tiny_run_writes_a_loadable_checkpoint_and_the_loss_falls(tiny_run):
    run_dir = Path(tiny_run["run_dir"])
    for name in ("config.json", "card.json", "model.safetensors", "resume.pt", "metrics.json"):
        assert (run_dir / name).is_file(), name
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir)).Reload()
    tags = set(events.Tags()["scalars"])
    for tag in (
        "train/loss",
        "train/lr",
        "train/images_per_s",
        "val/accuracy",
        "test/accuracy",
        "layers/backbone.fc/weight_grad_norm",
        "layers/backbone.stem.0/act_std",
    ):
        assert tag in tags, tag
    assert {"val/confusion_matrix", "curves"} <= set(events.Tags()["images"]) and events.Tags()["histograms"]
    losses = [h["train_loss"] for h in tiny_run["history"]]
    assert losses[-1] < losses[0] - 0.1, losses
    assert all(0 <= h["train_accuracy"] <= 1 and h["val_loss"] > 0 for h in tiny_run["history"])
    assert_png(run_dir / "curves.png", min_size=(400, 250))
    model, cfg, card = load_torch_model(run_dir)
    assert cfg.widths == (16, 32) and card["classes"] == [str(i) for i in range(10)]
    weights = load_file(run_dir / "model.safetensors")
    assert torch.equal(model.state_dict()["backbone.fc.weight"], weights["backbone.fc.weight"])
    state = load_resume_state(run_dir / "resume.pt")  # weights_only=True: no pickled code needed
    assert state["epoch"] == 3 and state["step"] == tiny_run["steps"] == 48


def assert_png(path: Path, min_size: tuple[int, int]) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= min_size[0] and image.height >= min_size[1], image


def test_eval_reproduces_the_saved_metrics(tiny_run, capsys):
    main(["eval", "--ckpt", tiny_run["run_dir"]])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["accuracy"] == pytest.approx(tiny_run["test_accuracy"], abs=1e-9)
    assert printed["confusion_matrix"] == tiny_run["test"]["confusion_matrix"]
    assert set(printed["precision"]) == set(printed["recall"]) == {str(i) for i in range(10)}
    assert printed["pictures"]["confusion"] == str(Path(tiny_run["run_dir"]) / "confusion.png")  # beside the run


def test_eval_draws_the_confusion_matrix_and_the_mistakes_where_asked(tiny_run, tmp_path, capsys):
    main(["eval", "--ckpt", tiny_run["run_dir"], "--pictures", str(tmp_path / "pictures")])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["pictures"]["confusion"] == str(tmp_path / "pictures" / "confusion.png")
    assert_png(tmp_path / "pictures" / "confusion.png", min_size=(400, 400))
    wrong = printed["samples"] - sum(printed["confusion_matrix"][i][i] for i in range(10))
    assert wrong > 0  # the tiny model errs: mistakes.png has pictures to show
    assert_png(Path(printed["pictures"]["mistakes"]), min_size=(400, 100))

    from classifier.pictures import confusion_figure

    figure = confusion_figure(printed["confusion_matrix"], [str(i) for i in range(10)], "title")
    assert sum(int(text.get_text()) for text in figure.axes[0].texts) == printed["samples"] == 360


def test_resume_after_a_kill_ends_like_an_uninterrupted_run(tmp_path):
    args = ["train", "--preset", "tiny", "--epochs", "6", "--out", str(tmp_path)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "classifier.cli", *args, "--name", "killed"],
        env={**os.environ, **OFFLINE_ENV},
        start_new_session=True,  # no terminal signals from the test runner reach it
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    resume_file = tmp_path / "classifier" / "killed" / "resume.pt"
    kill_when(proc, lambda: resume_file.exists() and load_resume_state(resume_file)["epoch"] >= 2, timeout=120)
    assert not (resume_file.parent / "metrics.json").exists(), "the run finished before it was killed"
    killed_at = load_resume_state(resume_file)["epoch"]
    assert 2 <= killed_at < 6

    cfg = dataclasses.replace(PRESETS["tiny"], epochs=6, out=tmp_path)
    resumed = train(dataclasses.replace(cfg, name="killed", resume=True))
    straight = train(dataclasses.replace(cfg, name="straight"))
    assert resumed["history"] == straight["history"]
    assert resumed["test_loss"] == straight["test_loss"]
    assert resumed["test"]["confusion_matrix"] == straight["test"]["confusion_matrix"]


def test_train_and_eval_on_an_image_folder_tree(tmp_path, make_image_folder, capsys):
    root = make_image_folder(tmp_path / "shapes", per_class=30)
    main(
        [
            "train",
            "--preset",
            "tiny",
            "--data",
            str(root),
            "--image-size",
            "20",
            "--out",
            str(tmp_path),
            "--name",
            "shapes",
            "--epochs",
            "4",
        ]
    )
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    run_dir = Path(metrics["run_dir"])
    assert json.loads((run_dir / "card.json").read_text(encoding="utf-8"))["classes"] == ["circle", "square"]
    assert metrics["test_accuracy"] > 0.5  # two easy classes: better than chance after 4 short epochs
    other = make_image_folder(tmp_path / "new_shapes", per_class=5)  # a tree the model never saw
    main(["eval", "--ckpt", str(run_dir), "--data", str(other)])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["samples"] == 10


def test_tiny_preset_trains_under_two_process_ddp(ddp_run):
    rank0, rank1 = ddp_run
    assert rank0["processes"] == rank1["processes"] == 2
    assert rank0["steps"] == 24  # each rank sees half of the 512 images: 8 steps of 32 per epoch
    assert rank0["test"] == rank1["test"]  # evaluation is gathered across ranks
    assert (Path(rank0["run_dir"]) / "model.safetensors").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--data", "/no/such/folder"], "no such folder"),
        (["train", "--backbone", "no-such-net", "--epochs", "1"], "unknown backbone"),
        (["train", "--preset", "huge"], "unknown preset"),
        (["eval", "--ckpt", "/no/such/run"], "no such run folder"),
        (["launch"], "unknown command"),
    ],
)
def test_user_errors_end_in_one_line_and_exit_code_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_help_lists_every_field_and_the_presets(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--max-train-samples",
        "--label-smoothing",
        "--backbone",
        "--resume",
        "tiny, quick (default), full",
    ):
        assert flag in out, flag


@pytest.mark.parametrize(
    "overrides",
    [
        {"backbone": "resnet18", "freeze_epochs": 1, "epochs": 2},  # transfer path: frozen, then unfrozen
        {"optimizer": "sgd", "schedule": "cosine", "grad_accum": 2},
        {"mixed_precision": "bf16"},
    ],
    ids=["resnet18-freeze", "sgd-cosine-accum", "bf16"],
)
def test_training_options_run_end_to_end(tmp_path, overrides):
    cfg = dataclasses.replace(PRESETS["tiny"], out=tmp_path, max_train_samples=128, **overrides)
    metrics = train(cfg)
    assert len(metrics["history"]) == cfg.epochs and all(h["train_loss"] > 0 for h in metrics["history"])
    steps_per_epoch = math.ceil(math.ceil(128 / cfg.batch_size) / cfg.grad_accum)
    assert metrics["steps"] == cfg.epochs * steps_per_epoch
