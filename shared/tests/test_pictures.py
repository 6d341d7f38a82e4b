"""curves_figure draws what the history holds (and only that); save_figures writes PNGs and TensorBoard images."""

from __future__ import annotations

import pytest
from PIL import Image

from dlshared.monitor import RunLogger
from dlshared.pictures import curves_figure, save_figures

HISTORY = [
    {"step": 10, "train_loss": 2.0},
    {"step": 20, "train_loss": 1.5, "val_loss": 1.7, "val_accuracy": 0.5},
    {"step": 30, "train_loss": 1.0},
    {"step": 40, "train_loss": 0.8, "val_loss": 1.1, "val_accuracy": 0.8},
]


def test_each_panel_draws_the_records_that_have_its_keys():
    fig = curves_figure(HISTORY, {"loss": ["train_loss", "val_loss"], "accuracy": ["val_accuracy"], "f1": ["f1"]})
    loss, accuracy = fig.axes  # the f1 panel has no data: left out
    train, val = loss.get_lines()
    assert list(train.get_xdata()) == [10, 20, 30, 40] and list(val.get_xdata()) == [20, 40]
    assert list(val.get_ydata()) == [1.7, 1.1] and [t.get_text() for t in loss.get_legend().get_texts()] == [
        "train loss",
        "val loss",
    ]
    assert accuracy.get_ylabel() == "accuracy" and list(accuracy.get_lines()[0].get_ydata()) == [0.5, 0.8]


def test_a_history_without_any_asked_key_is_a_clear_error():
    with pytest.raises(ValueError, match="no record"):
        curves_figure(HISTORY, {"bleu": ["bleu"]})


def test_save_figures_writes_pngs_and_tensorboard_images(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = RunLogger(tmp_path)
    paths = save_figures(tmp_path, {"curves": curves_figure(HISTORY, {"loss": ["train_loss"]})}, log=log)
    log.close()
    assert paths == {"curves": str(tmp_path / "curves.png")}
    assert Image.open(tmp_path / "curves.png").size[0] > 300
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    assert events.Tags()["images"] == ["curves"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_eval_pictures_go_where_asked_else_into_the_run_but_never_into_the_shipped_folder(tmp_path, capsys):
    from dlshared.pictures import eval_pictures_dir

    run, shipped = tmp_path / "runs" / "a", tmp_path / "pkg" / "weights" / "quick"
    assert eval_pictures_dir(run, tmp_path / "out", shipped) == tmp_path / "out"
    assert eval_pictures_dir(run, None, shipped) == run
    assert eval_pictures_dir(shipped, None, shipped) is None and "--pictures DIR" in capsys.readouterr().out
    assert eval_pictures_dir(shipped, tmp_path / "out", shipped) == tmp_path / "out"
