"""What runs leave to look at (pictures.py): train's curves.png (and TensorBoard's copy), eval's samples.png (a row
per class of the samples it judged) into the run folder or --pictures, and never into the shipped weights' folder."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import torch

import diffusion.pictures as pictures
from diffusion.artifacts import load_pipeline
from diffusion.cli import main
from diffusion.evaluate import balanced_labels
from diffusion.pictures import class_rows, samples_figure, training_curves

from .conftest import assert_png, tensorboard_images


def eval_json(argv: list[str], capsys) -> dict:
    main(["eval", *argv])
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_train_draws_its_loss_and_judged_accuracy(tiny_run):
    run_dir = Path(tiny_run["run_dir"])
    assert_png(run_dir / "curves.png", 700, 300)
    assert "curves" in tensorboard_images(run_dir)
    loss, judged = training_curves(tiny_run["history"], tiny_run["eval"]).axes  # what curves.png was drawn from
    assert list(loss.lines[0].get_ydata()) == [record["loss"] for record in tiny_run["history"]]
    assert [line.get_ydata()[0] for line in judged.lines] == [
        tiny_run["eval"]["accuracy"],
        tiny_run["eval"]["confident"],
    ]
    assert [line.get_xdata()[0] for line in judged.lines] == [tiny_run["steps"]] * 2  # at the last step
    assert len(training_curves(tiny_run["history"], None).axes) == 1  # a run not judged: the loss alone


def test_class_rows_put_each_class_on_its_own_row():
    samples = (torch.arange(23) % 10).float()[:, None, None, None].expand(23, 1, 2, 2) / 10  # pixel = class / 10
    rows = class_rows(samples, num_classes=10, per_class=3).reshape(10, 3, 1, 2, 2)
    for label in range(10):
        drawn = 3 if label < 3 else 2  # 23 samples in turn: classes 0-2 have three, the others two
        assert (rows[label, :drawn] == label / 10).all() and (rows[label, drawn:] == 1).all()  # then white


def test_samples_figure_names_each_row_as_text():
    classes = [str(d) for d in range(9)] + ["$\\frac{"]  # a class name that would be broken mathtext
    figure = samples_figure(torch.rand(30, 1, 16, 16), classes, "title")
    assert [label.get_text() for label in figure.axes[0].get_yticklabels()] == [*classes[:9], "\\$\\frac{"]
    figure.savefig(io.BytesIO(), format="png")  # and it draws


def test_eval_draws_the_samples_it_judged_into_pictures(tiny_run, runs_root, tmp_path, monkeypatch, capsys):
    drawn = {}

    def spy(samples, classes, title):
        drawn.update(samples=samples, classes=classes, title=title)
        return samples_figure(samples, classes, title)

    monkeypatch.setattr(pictures, "samples_figure", spy)
    args = ["--ckpt", tiny_run["run_dir"], "--n", "20", "--steps", "2", "--runs", str(runs_root)]
    metrics = eval_json([*args, "--pictures", str(tmp_path / "pictures")], capsys)
    assert metrics["pictures"] == {"samples": str(tmp_path / "pictures" / "samples.png")}
    assert_png(tmp_path / "pictures" / "samples.png", 450, 450)
    requested = balanced_labels(20, 10)
    scored = load_pipeline(Path(tiny_run["run_dir"]))(requested, 2, 2.0, torch.Generator().manual_seed(0)).images
    assert torch.equal(drawn["samples"], scored)  # the images eval judged, not another draw
    assert drawn["classes"] == [str(d) for d in range(10)]
    assert f"judged accuracy {metrics['accuracy']:.1%}" in drawn["title"]


def test_eval_writes_into_the_run_folder_but_never_into_the_shipped_one(tiny_run, runs_root, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run["run_dir"], run_dir, ignore=shutil.ignore_patterns("samples.png"))
    args = ["--ckpt", str(run_dir), "--n", "10", "--steps", "1", "--runs", str(runs_root)]
    assert eval_json(args, capsys)["pictures"] == {"samples": str(run_dir / "samples.png")}
    assert_png(run_dir / "samples.png", 450, 450)
    (run_dir / "samples.png").unlink()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pictures, "SHIPPED", run_dir)  # as if the package shipped this folder
        main(["eval", *args])
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1])["pictures"] == {}
    assert "pass --pictures DIR" in out and not (run_dir / "samples.png").exists()
