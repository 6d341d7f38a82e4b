"""Fixtures: one tiny diffusion run per session (seconds), and a short judge so tests do not spend 25 s on it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from diffusion.config import PRESETS, TrainConfig


@pytest.fixture(autouse=True, scope="session")
def short_judge():
    """Tests check that the judge is used, not how good it is: 2 epochs instead of 30."""
    import diffusion.evaluate as evaluate

    saved, evaluate.JUDGE_EPOCHS = evaluate.JUDGE_EPOCHS, 2
    yield
    evaluate.JUDGE_EPOCHS = saved


def tiny_config(out: Path, **overrides) -> TrainConfig:
    return dataclasses.replace(PRESETS["tiny"], out=out, **overrides)


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def tiny_run(runs_root) -> dict:
    from diffusion.train import train

    return train(tiny_config(runs_root, name="tiny"))


@pytest.fixture(scope="module")
def one_thread():
    """Nets this small gain nothing from a second thread, and lose much when another job holds the cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_png(path: Path, min_width: int, min_height: int) -> None:
    """`path` is a real PNG picture, at least this big."""
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= min_width and image.height >= min_height, image.size


def tensorboard_images(run_dir) -> set[str]:
    """The tags of the images TensorBoard holds for a run folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    return set(EventAccumulator(str(run_dir)).Reload().Tags()["images"])
