"""Image-caption pairs: the embedded scenes, open_clip's CSV format, or a folder of images with .txt captions.

Every source becomes a list of (image, caption) items behind one Dataset, so training does not care where they
came from. Images are turned into tensors by the model's own preprocessing (open_clip's transform: resize,
centre crop, normalise), so a real pretrained model sees what it was trained on.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from dlshared.cli import UserError

from .scenes import Scene, draw, make_scenes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class Pairs(Dataset):
    """(image tensor [3, H, W], caption) pairs; each item's image comes from `load(i)`, drawn or read lazily."""

    def __init__(self, captions: list[str], load: Callable[[int], Image.Image], transform: Callable):
        self.captions, self.load, self.transform = captions, load, transform

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        return self.transform(self.load(i)), self.captions[i]


@dataclass
class Splits:
    train: Pairs
    val: Pairs
    test: dict[str, Pairs]  # "seen" (and, for the scenes, "unseen": the held-out colour-shape pairs)
    scenes: dict[str, list[Scene]]  # the scenes behind each split (empty for real data): zero-shot reads them
    source: str


def scene_pairs(scenes: list[Scene], image_size: int, transform: Callable, salt: int) -> Pairs:
    # each image's jitter is seeded by its split and index: the same picture every epoch and every run
    return Pairs(
        [s.caption() for s in scenes], lambda i: draw(scenes[i], image_size, seed=salt * 1_000_003 + i), transform
    )


def embedded_splits(train_scenes: int, data_seed: int, image_size: int, transform: Callable) -> Splits:
    """Train and validation scenes avoid the held-out pairs; test has seen scenes and scenes whose group is one."""
    held = max(200, train_scenes // 10)
    scenes = {
        "train": make_scenes(train_scenes, data_seed),
        "val": make_scenes(held, data_seed + 1),
        "seen": make_scenes(held, data_seed + 2),
        "unseen": make_scenes(held, data_seed + 3, held_out_group=True),
    }
    pairs = {name: scene_pairs(s, image_size, transform, salt) for salt, (name, s) in enumerate(scenes.items())}
    test = {"seen": pairs["seen"], "unseen": pairs["unseen"]}
    return Splits(pairs["train"], pairs["val"], test, scenes, f"embedded scenes (seed {data_seed})")


def read_pairs(path: Path, separator: str = ",") -> list[tuple[Path, str]]:
    """(image file, caption) from open_clip's CSV (filepath,title; paths relative to the CSV's folder) or from a
    folder of images with same-named .txt captions. A bad line or a missing file is refused with its place."""
    path = Path(path)
    separator = {"\\t": "\t", "tab": "\t"}.get(separator, separator)  # as typed in a shell
    if len(separator) != 1:
        raise UserError(f"--csv-separator {separator!r}: one character (or \\t)")
    if path.is_dir():
        pairs = []
        for image in sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            text = image.with_suffix(".txt")
            if not text.is_file():
                raise UserError(f"{image}: no caption file {text.name} beside it")
            pairs.append((image, text.read_text(encoding="utf-8").strip()))
    elif path.is_file():
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter=separator))
        if not rows or "filepath" not in rows[0] or "title" not in rows[0]:
            raise UserError(f"{path}: the first line must name the columns filepath and title (open_clip's format)")
        file_col, title_col = rows[0].index("filepath"), rows[0].index("title")
        pairs = []
        for line, row in enumerate(rows[1:], start=2):
            if len(row) <= max(file_col, title_col) or not row[title_col].strip():
                raise UserError(f"{path}, line {line}: expected a filepath and a non-empty title")
            image = (path.parent / row[file_col]).resolve()
            if not image.is_file():
                raise UserError(f"{path}, line {line}: no image file {row[file_col]}")
            pairs.append((image, row[title_col].strip()))
    else:
        raise UserError(f"{path}: no such file or folder")
    if len(pairs) < 10:
        raise UserError(f"{path}: {len(pairs)} image-caption pair(s); at least 10 are needed to split and train")
    return pairs


def open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"{path}: not a readable image ({type(err).__name__})") from None


def real_splits(path: Path, transform: Callable, seed: int, separator: str = ",") -> Splits:
    """A tenth (at least one pair) each for validation and test, chosen by `seed`; the rest trains."""
    pairs = read_pairs(path, separator)
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed)).tolist()
    held = max(1, len(pairs) // 10)
    parts = {"val": order[:held], "seen": order[held : 2 * held], "train": order[2 * held :]}

    def subset(indices: list[int]) -> Pairs:
        chosen = [pairs[i] for i in indices]
        return Pairs([c for _, c in chosen], lambda i: open_image(chosen[i][0]), transform)

    return Splits(subset(parts["train"]), subset(parts["val"]), {"seen": subset(parts["seen"])}, {}, str(path))
