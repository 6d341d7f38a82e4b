"""Fixtures: trained runs shared by the tests (trained once per session) and a generated ImageFolder tree."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classifier.config import PRESETS, TrainConfig


def tiny_config(out: Path, **overrides) -> TrainConfig:
    return dataclasses.replace(PRESETS["tiny"], out=out, **overrides)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> dict:
    """The tiny preset trained once: seconds, loss falls, files written."""
    from classifier.train import train

    return train(tiny_config(tmp_path_factory.mktemp("runs"), name="tiny"))


@pytest.fixture(scope="session")
def ddp_run(tmp_path_factory) -> list[dict]:
    """The tiny preset trained once under 2-process gloo DDP: each rank's returned metrics."""
    from classifier.train import train
    from dlshared.processes import run_distributed

    return run_distributed(train, tiny_config(tmp_path_factory.mktemp("runs"), name="ddp", device="cpu"), nprocs=2)


@pytest.fixture(scope="session")
def trained_run() -> dict:
    """A model good enough for accuracy comparisons (export, int8, demo): the quick-preset weights the package
    ships (test_shipped.py checks them; the training tests train models of their own)."""
    from classifier.artifacts import SHIPPED

    return {**json.loads((SHIPPED / "metrics.json").read_text(encoding="utf-8")), "run_dir": str(SHIPPED)}


@pytest.fixture
def make_image_folder():
    return write_image_folder


def write_image_folder(root: Path, classes=("circle", "square"), per_class: int = 24, size: int = 20) -> Path:
    """A tiny ImageFolder tree of drawn shapes (PNG, RGB), in the layout users bring: root/<class>/<file>.png."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            c, r = rng.integers(7, size - 7, 2), rng.integers(4, 7)
            if name == "circle":
                mask = (yy - c[0]) ** 2 + (xx - c[1]) ** 2 <= r * r
            else:
                mask = (abs(yy - c[0]) <= r) & (abs(xx - c[1]) <= r)
            image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            image[mask] = rng.integers(150, 256, 3)
            Image.fromarray(image).save(root / name / f"{i:03d}.png")
    return root
