"""Images and labels in memory, pixels in [-1, 1] (what diffusion models expect): scikit-learn's digits (the
embedded default), any ImageFolder tree, or CIFAR-10 (downloaded through torchvision, for users who are online).
A Hub dataset (`--data owner/name[/config][:split]`, dlshared.hubdata) is read as an ImageFolder root is: its
`image` column (else its only Image column), its `label` column (else its only ClassLabel column; else one class)
whose ClassLabel names become the class names, split by --test-fraction.

The held-out split never trains anything: it is the FID/KID reference and the test set of the judge.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dlshared.cache import cache_dir
from dlshared.cli import UserError
from dlshared.hubdata import HubDataset, column_names, load_hub_dataset, parse_hub_id

from .config import DataConfig, check_data_config, data_source

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


@dataclass
class DataBundle:
    train_images: torch.Tensor
    """[N, C, H, W] float in [-1, 1]."""
    train_labels: torch.Tensor
    """[N] int64 in [0, len(classes))."""
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    source: str


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] model space -> [0, 1] pixels."""
    return ((images + 1) / 2).clamp(0, 1)


def digits_to_images(values: np.ndarray, size: int) -> torch.Tensor:
    """scikit-learn digits rows (64 values in 0..16) -> [N, 1, size, size] in [-1, 1], bilinearly upscaled."""
    x = torch.as_tensor(values, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.clamp(0, 1) * 2 - 1


def split_indices(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified split: every class keeps the same share in both parts."""
    from sklearn.model_selection import train_test_split

    if not 0 < test_fraction < 1:
        raise UserError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
    index = np.arange(len(labels))
    train, test = train_test_split(index, test_size=test_fraction, random_state=seed, stratify=labels)
    return np.sort(train), np.sort(test)


def load_digits_bundle(image_size: int, channels: int, test_fraction: float, split_seed: int) -> DataBundle:
    """scikit-learn's 1797 digits (8x8, bundled with the package: no network), upscaled to image_size."""
    from sklearn.datasets import load_digits

    if channels != 1:
        raise UserError("the digits are grayscale: use --channels 1")
    digits = load_digits()
    images, labels = digits_to_images(digits.data, image_size), torch.as_tensor(digits.target)
    train, test = split_indices(digits.target, test_fraction, split_seed)
    classes = [str(d) for d in range(10)]
    source = f"scikit-learn digits (8x8 -> {image_size}x{image_size})"
    return DataBundle(images[train], labels[train], images[test], labels[test], classes, source)


def image_to_tensor(image, size: int, channels: int) -> torch.Tensor:
    """A PIL image -> [channels, size, size] in [-1, 1]: converted to RGB or grayscale, bicubically resized."""
    from PIL import Image

    image = image.convert("RGB" if channels == 3 else "L").resize((size, size), Image.Resampling.BICUBIC)
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1
    return torch.from_numpy(array.reshape(size, size, channels)).permute(2, 0, 1)


def read_image(path: Path, size: int, channels: int) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image_to_tensor(image, size, channels)
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"{path}: not an image PIL can read ({err})") from None


def read_class_folders(root: Path, size: int, channels: int, classes: list[str] | None = None):
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    classes = classes or found
    if not found:
        raise UserError(f"{root}: expected one folder per class (ImageFolder layout: {root}/<class>/<image>)")
    if found != classes:
        raise UserError(f"{root} has classes {found}; expected {classes}")
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        images += [read_image(p, size, channels) for p in files]
        labels += [label] * len(files)
    if not images:
        raise UserError(f"{root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in its class folders")
    return torch.stack(images), torch.tensor(labels), classes


def split_bundle(images, labels, classes, source: str, where: str, test_fraction: float, split_seed: int) -> DataBundle:
    """Hold out `test_fraction` of every class (split by seed): for a source without a test split of its own."""
    if min(np.bincount(labels.numpy(), minlength=len(classes))) < 2:
        raise UserError(f"{where}: every class needs at least 2 images (one to train on, one to hold out)")
    train, test = split_indices(labels.numpy(), test_fraction, split_seed)
    return DataBundle(images[train], labels[train], images[test], labels[test], classes, source)


def load_image_folder(
    root: str | Path | None, image_size: int, channels: int, test_fraction: float, split_seed: int
) -> DataBundle:
    """root/<class>/<image> (split by seed), or root/train/<class>/... and root/test/<class>/..."""
    if root is None or not Path(root).is_dir():
        raise UserError(f"--data {root}: no such folder")
    root = Path(root)
    source = f"ImageFolder {root} ({image_size}px, {channels} channel(s))"
    if (root / "train").is_dir() and (root / "test").is_dir():
        train_x, train_y, classes = read_class_folders(root / "train", image_size, channels)
        test_x, test_y, _ = read_class_folders(root / "test", image_size, channels, classes)
        return DataBundle(train_x, train_y, test_x, test_y, classes, source)
    images, labels, classes = read_class_folders(root, image_size, channels)
    return split_bundle(images, labels, classes, source, str(root), test_fraction, split_seed)


def hub_images(spec: HubDataset, size: int, channels: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(images, labels, class names) of a Hub dataset: its `image` column (else its only Image column) and its
    `label` column (else its only ClassLabel column): ClassLabel names are the classes, other values their sorted
    distinct values; without one, every image is of one class, named after the dataset."""
    import datasets

    dataset = load_hub_dataset(spec, "--data", "an ImageFolder root (root/<class>/<image>)")
    features = dataset.features
    image_columns = [name for name, kind in features.items() if isinstance(kind, datasets.Image)]
    label_columns = [name for name, kind in features.items() if isinstance(kind, datasets.ClassLabel)]
    image = _column("image", image_columns)
    label = "label" if "label" in features else _column("label", label_columns)
    if image is None:
        raise UserError(f"--data {spec}: no `image` column, nor exactly one image column ({column_names(dataset)})")
    if label is None:
        classes, labels = [spec.repo.split("/")[1]], [0] * len(dataset)
    elif isinstance(features[label], datasets.ClassLabel):
        classes, labels = list(features[label].names), list(dataset[label])
    else:  # ints or strings: the classes are their distinct values, in order
        values = list(dataset[label])
        distinct = sorted(set(values))
        classes, labels = [str(v) for v in distinct], [distinct.index(v) for v in values]
    if min(labels) < 0:  # ClassLabel's -1: a split without labels (some test splits)
        raise UserError(f"--data {spec}: rows without a label ({label} = -1); use a labelled split")
    tensors = []
    for n, row in enumerate(dataset.select_columns([image]), start=1):
        if row[image] is None:
            raise UserError(f"--data {spec}, row {n}: no image")
        tensors.append(image_to_tensor(row[image], size, channels))
    return torch.stack(tensors), torch.tensor(labels), classes


def _column(preferred: str, candidates: list[str]) -> str | None:
    """`preferred` when it is among `candidates`, else the only candidate, else None (no guess between several)."""
    if preferred in candidates:
        return preferred
    return candidates[0] if len(candidates) == 1 else None


def load_hub_images(
    spec: HubDataset, image_size: int, channels: int, test_fraction: float, split_seed: int
) -> DataBundle:
    """A Hub dataset's split, read as an ImageFolder root is: every class split by seed."""
    images, labels, classes = hub_images(spec, image_size, channels)
    source = f"Hub dataset {spec} ({image_size}px, {channels} channel(s))"
    return split_bundle(images, labels, classes, source, f"--data {spec}", test_fraction, split_seed)


def load_cifar10(root: Path | None, image_size: int, channels: int) -> DataBundle:  # pragma: no cover - online
    """CIFAR-10's own train/test split, downloaded through torchvision into root (default: the capstones' cache
    root, dlshared.cache, where the classifier keeps its copy too)."""
    from torchvision.datasets import CIFAR10

    root = root or cache_dir("cifar10")
    try:
        parts = [CIFAR10(str(root), train=t, download=True) for t in (True, False)]
    except OSError as err:
        raise UserError(f"could not download CIFAR-10 to {root} ({err}); are you online?") from None
    out = []
    for part in parts:
        x = torch.from_numpy(part.data).permute(0, 3, 1, 2).float() / 127.5 - 1  # [N, 3, 32, 32] in [-1, 1]
        if image_size != 32:
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
        if channels == 1:
            x = x.mean(1, keepdim=True)
        out += [x, torch.tensor(part.targets)]
    return DataBundle(*out, list(parts[0].classes), f"CIFAR-10 ({image_size}px)")


def load_data(cfg: DataConfig) -> DataBundle:
    """The data `cfg` names (its DataConfig fields), checked, in memory."""
    check_data_config(cfg)
    dataset = data_source(cfg)
    if dataset == "digits":
        return load_digits_bundle(cfg.image_size, cfg.channels, cfg.test_fraction, cfg.split_seed)
    if dataset == "imagefolder" and (spec := parse_hub_id(cfg.data)) is not None:
        return load_hub_images(spec, cfg.image_size, cfg.channels, cfg.test_fraction, cfg.split_seed)
    if dataset == "imagefolder":
        return load_image_folder(cfg.data, cfg.image_size, cfg.channels, cfg.test_fraction, cfg.split_seed)
    return load_cifar10(cfg.data, cfg.image_size, cfg.channels)
