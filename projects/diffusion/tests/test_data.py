"""Data: the embedded digits and a generated ImageFolder tree in the layout users bring."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from diffusion.config import DataConfig
from diffusion.data import load_data
from dlshared.cli import UserError


def test_digits_are_in_model_range_and_split_by_class():
    data = load_data(DataConfig())
    assert data.train_images.shape == (1437, 1, 16, 16) and data.test_images.shape == (360, 1, 16, 16)
    assert data.train_images.min() == -1 and data.train_images.max() == 1
    counts = torch.bincount(data.test_labels)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: every class held out alike
    again = load_data(DataConfig())
    assert torch.equal(again.test_images, data.test_images)  # the held-out set never moves


def write_tree(root, classes=("a", "b"), per_class=6, size=12, mode="RGB"):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).convert(mode).save(
                root / name / f"{i}.png"
            )
    return root


def test_image_folder_is_resized_and_converted(tmp_path):
    write_tree(tmp_path / "tree")
    data = load_data(DataConfig(data=tmp_path / "tree", image_size=8, channels=3))
    assert data.classes == ["a", "b"] and data.train_images.shape[1:] == (3, 8, 8)
    assert len(data.train_images) + len(data.test_images) == 12
    assert data.train_images.min() >= -1 and data.train_images.max() <= 1


def test_image_folder_with_train_and_test_splits(tmp_path):
    write_tree(tmp_path / "tree/train")
    write_tree(tmp_path / "tree/test", per_class=2)
    data = load_data(DataConfig(data=tmp_path / "tree"))
    assert len(data.test_images) == 4 and data.train_images.shape[1] == 1


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: p, "no such folder"),
        (lambda p: (p.mkdir(), p)[1], "one folder per class"),
        (
            lambda p: ((p / "a").mkdir(parents=True), (p / "a/x.txt").write_text("x", encoding="utf-8"), p)[2],
            "no images",
        ),
        (
            lambda p: ((p / "a").mkdir(parents=True), (p / "a/x.png").write_text("x", encoding="utf-8"), p)[2],
            "not an image",
        ),
    ],
    ids=["missing", "flat", "empty", "corrupt"],
)
def test_bad_folders_are_clear_errors(tmp_path, setup, message):
    root = setup(tmp_path / "tree")
    with pytest.raises(UserError, match=message):
        load_data(DataConfig(data=root))


def test_bad_sizes_are_refused():
    with pytest.raises(UserError, match="multiple of 4"):
        load_data(DataConfig(image_size=10))
    with pytest.raises(UserError, match="grayscale"):
        load_data(DataConfig(channels=3))
