"""Data loaders: the digits split is fixed and stratified; ImageFolder trees in both layouts; clear errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from classifier.config import PRESETS
from classifier.data import load_data, split_indices
from dlshared.cli import UserError


def test_digits_split_is_fixed_disjoint_and_stratified():
    data = load_data(dataclasses.replace(PRESETS["quick"], augment=False))
    assert (len(data.train), len(data.val), len(data.test)) == (1257, 180, 360)
    x, y = data.test[0]
    assert x.shape == (1, 32, 32) and x.min() >= 0.0 and x.max() <= 1.0 and data.classes[y] == str(y)
    labels = np.arange(1797) % 10
    a, b = split_indices(labels, 0.1, 0.2, seed=0), split_indices(labels, 0.1, 0.2, seed=0)
    for first, second in zip(a, b, strict=True):
        assert np.array_equal(first, second)
    assert not set(a[0]) & set(a[1]) and not set(a[0]) & set(a[2]) and not set(a[1]) & set(a[2])
    assert np.bincount(labels[a[2]]).min() == np.bincount(labels[a[2]]).max()  # every class equally in test


def test_augmentation_changes_training_images_only():
    data = load_data(PRESETS["quick"])
    torch.manual_seed(0)
    assert not torch.equal(data.train[0][0], data.train[0][0])
    assert torch.equal(data.test[0][0], data.test[0][0])


def test_image_folder_single_tree_split_by_seed(tmp_path, make_image_folder):
    root = make_image_folder(tmp_path / "shapes", per_class=20)
    cfg = dataclasses.replace(PRESETS["tiny"], data=root, image_size=16, max_train_samples=None)
    data = load_data(cfg)
    assert data.classes == ["circle", "square"] and data.in_channels == 3
    assert (len(data.train), len(data.val), len(data.test)) == (28, 4, 8)
    assert data.train[0][0].shape == (3, 16, 16)


def test_image_folder_train_val_layout(tmp_path, make_image_folder):
    make_image_folder(tmp_path / "tree" / "train", per_class=6)
    make_image_folder(tmp_path / "tree" / "val", per_class=2)
    data = load_data(dataclasses.replace(PRESETS["tiny"], data=tmp_path / "tree", max_train_samples=None))
    assert (len(data.train), len(data.val), len(data.test)) == (12, 4, 4)


@pytest.mark.parametrize("make", ["missing", "empty", "no_images", "class_mismatch"])
def test_bad_folders_raise_user_errors(tmp_path, make, make_image_folder):
    root = tmp_path / "data"
    if make == "empty":
        root.mkdir()
    elif make == "no_images":
        (root / "cat").mkdir(parents=True)
        (root / "cat" / "notes.txt").write_text("not an image", encoding="utf-8")
    elif make == "class_mismatch":
        make_image_folder(root / "train", classes=("circle", "square"), per_class=2)
        make_image_folder(root / "val", classes=("circle", "triangle"), per_class=2)
    with pytest.raises(UserError):
        load_data(dataclasses.replace(PRESETS["tiny"], data=root))


def test_cifar10_offline_says_what_to_do(tmp_path):
    cfg = dataclasses.replace(PRESETS["full"], data=tmp_path / "cifar")
    with pytest.raises(UserError, match="offline, use --data"):
        load_data(cfg)


def test_max_train_samples_draws_from_every_class(tmp_path, make_image_folder):
    root = make_image_folder(tmp_path / "shapes", classes=("a", "b", "c"), per_class=20)
    data = load_data(dataclasses.replace(PRESETS["tiny"], data=root, max_train_samples=12))
    labels = [data.train[i][1] for i in range(len(data.train))]
    assert len(labels) == 12 and set(labels) == {0, 1, 2}  # not just the first class's files
