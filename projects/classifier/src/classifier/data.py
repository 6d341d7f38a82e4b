"""Data: the bundled digits (default), any ImageFolder tree, or CIFAR-10 (download), all as [0, 1] float images.

Normalisation is not done here: the model carries its mean/std (see model.ImageClassifier), so exported models,
the demo and evaluation all feed the same plain [0, 1] pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset, Subset

from dlshared.cache import cache_dir
from dlshared.cli import UserError

from .config import TrainConfig

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class DataBundle:
    train: Dataset
    val: Dataset
    test: Dataset
    classes: list[str]
    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    style: str
    """How the demo turns an arbitrary picture into a model input: "digits" or "photo"."""
    source: str


@dataclass(frozen=True)
class Split:
    """How a source without its own val/test folders is divided: stratified, the same for the same seed."""

    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0


class TensorImages(Dataset):
    """Images held in memory as a [N, C, H, W] float tensor in [0, 1], with an optional per-sample transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform=None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i]
        return (self.transform(x) if self.transform else x), int(self.labels[i])


def digits_to_images(pixels: np.ndarray, size: int) -> torch.Tensor:
    """scikit-learn digits rows (64 values in 0..16) -> [N, 1, size, size] in [0, 1], upscaled bilinearly."""
    x = torch.as_tensor(pixels, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)


def split_indices(labels: list[int] | np.ndarray, val_fraction: float, test_fraction: float, seed: int):
    """Stratified train/val/test indices, the same for the same seed on every machine."""
    idx = np.arange(len(labels))
    labels = np.asarray(labels)
    rest, test = train_test_split(idx, test_size=test_fraction, stratify=labels, random_state=seed)
    train, val = train_test_split(
        rest, test_size=val_fraction / (1 - test_fraction), stratify=labels[rest], random_state=seed
    )
    return np.sort(train), np.sort(val), np.sort(test)


def limit(indices, n: int | None, seed: int) -> np.ndarray:
    """At most `n` of `indices`, drawn at random (seeded): folders list files class by class, so the first n
    would be the first classes only."""
    indices = np.asarray(indices)
    if n is None or n >= len(indices):
        return indices
    return np.sort(np.random.default_rng(seed).permutation(indices)[:n])


def load_digits_data(
    image_size: int = 32, split: Split = Split(), max_train_samples: int | None = None, augment: bool = True
) -> DataBundle:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits_to_images(digits.data, image_size)
    labels = torch.as_tensor(digits.target)
    train, val, test = split_indices(digits.target, split.val_fraction, split.test_fraction, split.seed)
    train = limit(train, max_train_samples, split.seed)
    mean, std = images[train].mean().item(), images[train].std().item()
    return DataBundle(
        train=TensorImages(images[train], labels[train], digit_jitter() if augment else None),
        val=TensorImages(images[val], labels[val]),
        test=TensorImages(images[test], labels[test]),
        classes=[str(c) for c in digits.target_names],
        in_channels=1,
        mean=(mean,),
        std=(std,),
        style="digits",
        source=f"scikit-learn digits (8x8 -> {image_size}px), split seed {split.seed}",
    )


def digit_jitter():
    """Digits are centred and upright: small shifts, rotations and scalings are the natural variation; no flips.
    Bilinear: nearest-neighbour rotation makes jagged strokes the test images never have."""
    from torchvision.transforms import v2  # here, not at the top: torchvision costs the demo seconds at start

    bilinear = v2.InterpolationMode.BILINEAR
    return v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1), interpolation=bilinear)


def photo_transforms(size: int, train: bool, augment: bool):
    from torchvision.transforms import v2

    if train and augment:
        geometry = [v2.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True), v2.RandomHorizontalFlip()]
    else:
        geometry = [v2.Resize((size, size), antialias=True)]
    return v2.Compose([v2.ToImage(), v2.RGB(), *geometry, v2.ToDtype(torch.float32, scale=True)])


def image_folder(root: Path, transform):
    from torchvision import datasets

    try:
        return datasets.ImageFolder(root, transform=transform)
    except (FileNotFoundError, RuntimeError) as err:  # torchvision raises these for empty or class-less trees
        raise UserError(f"{root} is not an ImageFolder tree (one sub-folder of images per class): {err}") from None


def load_image_folder(
    root: Path, image_size: int = 32, split: Split = Split(), max_train_samples: int | None = None, augment: bool = True
) -> DataBundle:
    """`root/train` + `root/val` (+ `root/test`) when present, else one class-per-folder tree split by seed."""
    if not root.is_dir():
        raise UserError(f"--data {root}: no such folder")
    train_tf = photo_transforms(image_size, train=True, augment=augment)
    eval_tf = photo_transforms(image_size, train=False, augment=False)
    if (root / "train").is_dir() and (root / "val").is_dir():
        train = image_folder(root / "train", train_tf)
        val = image_folder(root / "val", eval_tf)
        test = image_folder(root / "test", eval_tf) if (root / "test").is_dir() else val
        for name, part in (("val", val), ("test", test)):
            if part.classes != train.classes:
                raise UserError(f"{root}: classes of {name}/ {part.classes} differ from train/ {train.classes}")
        classes, source = train.classes, f"ImageFolder {root} (train/val{'/test' if test is not val else ''})"
        if max_train_samples:
            train = Subset(train, limit(range(len(train)), max_train_samples, split.seed))
    else:
        full_train, full_eval = image_folder(root, train_tf), image_folder(root, eval_tf)
        tr, va, te = split_indices(full_train.targets, split.val_fraction, split.test_fraction, split.seed)
        train = Subset(full_train, limit(tr, max_train_samples, split.seed))
        val, test = Subset(full_eval, va), Subset(full_eval, te)
        classes, source = full_train.classes, f"ImageFolder {root}, split seed {split.seed}"
    return DataBundle(train, val, test, classes, 3, IMAGENET_MEAN, IMAGENET_STD, "photo", source)


def load_cifar10(
    root: Path | None, image_size: int, split: Split, max_train_samples: int | None, augment: bool
) -> DataBundle:
    """CIFAR-10 via torchvision's downloader (checksummed, cached in --data, else the capstones' cache root:
    dlshared.cache, ~/.cache/capstones/cifar10)."""
    from torchvision import datasets

    root = root or cache_dir("cifar10")
    train_tf = photo_transforms(image_size, train=True, augment=augment)
    eval_tf = photo_transforms(image_size, train=False, augment=False)
    try:
        full_train = datasets.CIFAR10(root, train=True, download=True, transform=train_tf)
        full_eval = datasets.CIFAR10(root, train=True, download=False, transform=eval_tf)
        test = datasets.CIFAR10(root, train=False, download=True, transform=eval_tf)
    except Exception as err:  # URLError, socket errors, checksum failures: all mean "could not get the data"
        message = f"could not download CIFAR-10 to {root} ({err}); offline, use --data with an ImageFolder"
        raise UserError(message) from None
    indices = np.arange(len(full_train))
    tr, va = train_test_split(
        indices, test_size=split.val_fraction, stratify=full_train.targets, random_state=split.seed
    )
    train = Subset(full_train, limit(tr, max_train_samples, split.seed))
    val = Subset(full_eval, np.sort(va))
    classes = list(full_train.classes)
    return DataBundle(train, val, test, classes, 3, IMAGENET_MEAN, IMAGENET_STD, "photo", f"CIFAR-10 ({root})")


def load_data(cfg: TrainConfig) -> DataBundle:
    """The data a run's config names: the one place where config fields become loader arguments (train, eval,
    export and the demo all rebuild a run's splits through it)."""
    split = Split(cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    options = (cfg.image_size, split, cfg.max_train_samples, cfg.augment)
    dataset = cfg.resolved_dataset()
    if dataset == "digits":
        return load_digits_data(*options)
    if dataset == "cifar10":
        return load_cifar10(cfg.data, *options)
    if cfg.data is None:
        raise UserError("--dataset imagefolder needs --data PATH")
    return load_image_folder(Path(cfg.data), *options)
