"""`--data owner/name`: a Hub dataset's image and label columns are read as an ImageFolder tree is; offline, one line."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from diffusion.cli import main
from diffusion.config import DataConfig
from diffusion.data import load_data
from dlshared.testing import assert_one_line_error


def pictures(n: int, size: int = 12) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture
def fake_hub(monkeypatch):
    """datasets.load_dataset answering with the Dataset a test puts in `served` instead of the Hub."""
    asked, served = [], []

    def load_dataset(path, name=None, split=None):
        asked.append((path, name, split))
        return served[0]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return asked, served


def test_image_and_class_label_columns_become_images_and_class_names(fake_hub):
    asked, served = fake_hub
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"])})
    served.append(datasets.Dataset.from_dict({"image": pictures(10), "label": [0, 1] * 5}, features=features))
    data = load_data(DataConfig(data="someone/pets:test", image_size=8, channels=3))
    assert asked == [("someone/pets", None, "test")]
    assert data.classes == ["cat", "dog"] and data.train_images.shape[1:] == (3, 8, 8)
    assert len(data.train_images) + len(data.test_images) == 10 and data.train_images.abs().max() <= 1
    assert torch.bincount(data.test_labels).tolist() == [1, 1]  # 20% of each class held out, as for a folder
    assert data.source.startswith("Hub dataset someone/pets:test")


def test_other_column_names_plain_labels_and_no_labels(fake_hub):
    _, served = fake_hub
    # CIFAR-10 on the Hub calls its image column `img`; a plain int label: its distinct values are the classes
    served.append(
        datasets.Dataset.from_dict({"img": pictures(8), "label": [7, 3] * 4}).cast_column("img", datasets.Image())
    )
    data = load_data(DataConfig(data="someone/numbers", image_size=8))
    assert data.classes == ["3", "7"] and data.train_images.shape[1] == 1  # grayscale by default
    served[0] = datasets.Dataset.from_dict({"image": pictures(6)}).cast_column("image", datasets.Image())
    assert load_data(DataConfig(data="someone/faces", image_size=8)).classes == ["faces"]  # unlabelled: one class


def test_offline_hub_id_and_mistyped_folder_are_one_line_errors(tmp_path, capsys):
    # the real load_dataset under HF_HUB_OFFLINE=1 (dlshared.testing): refused at once, and no run folder is left
    argv = ["train", "--preset", "tiny", "--out", str(tmp_path), "--data"]
    err = assert_one_line_error(main, [*argv, "nobody-here/no-images"], capsys)
    assert "neither a local path nor a hub dataset" in err.lower() and "OfflineModeIsEnabled" in err
    assert "run once with network" in err and "or pass an ImageFolder root" in err
    assert not any((tmp_path / "diffusion").glob("*"))
    assert "no such folder" in assert_one_line_error(main, [*argv, str(tmp_path / "flowers")], capsys)


def test_the_model_card_names_a_hub_dataset_by_its_id():
    from diffusion.export import _dataset

    assert _dataset({"data": "ylecun/mnist:test", "dataset": "auto"}, {}) == (
        "ylecun/mnist",
        "ylecun/mnist (Hugging Face Hub, split test)",
    )
    assert _dataset({"data": None, "dataset": "auto"}, {})[0] == "sklearn-digits"
