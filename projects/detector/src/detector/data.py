"""One loader for every detection dataset: COCO JSON + images, the format the generated shapes are written in too.

Targets follow torchvision's detection convention (boxes xyxy in pixels, labels 1..K with 0 for background,
uint8 instance masks), so the same batches feed the from-scratch detector and torchvision's R-CNNs. Categories
are matched by *name*, not id: a dataset whose file numbers its categories differently, or has extra ones,
still lines up with a model's classes.
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset, Subset

from dlshared.cache import cache_dir
from dlshared.cli import UserError

from .shapes import ensure_shapes


class CocoDetection(Dataset):
    """Images and instance annotations of one COCO JSON file: `(image, target)` pairs.

    `root` is a folder with `annotations.json` (images next to it or in `root/images`, `file_name` may hold a
    sub-folder), a folder with exactly one `annotations/instances_<split>.json` (the COCO 2017 layout, images in
    `root/<split>`), or the JSON file itself. `classes` fixes the label order (label k is classes[k - 1]); file
    categories not in it are ignored with a warning. Without `classes`, the file's categories sorted by id.

    image: [3, H, W] float32 in [0, 1]. target: boxes [N, 4] float32 xyxy pixels, labels [N] int64 in 1..K,
    masks [N, H, W] uint8, iscrowd [N] int64, image_id int, orig_size and size (H, W) int64: the image as stored
    and after the resize, so predictions map back to file coordinates by size -> orig_size.

    Crowd annotations (iscrowd=1, one region around many objects) are left out, as torchvision's reference
    training does: a model would learn the whole crowd as one object. Evaluation reads the JSON itself, where
    COCOeval treats crowds as regions to ignore. iscrowd is kept, all zeros, for code that expects the key.
    Annotations without a positive-size box are left out too (the R-CNN losses fail on them).

    `image_size`: the longer side is resized to image_size and the image padded at the bottom and right to a
    square, so that box coordinates only scale (the padding adds no offset) and every batch stacks.
    `transform`: a torchvision.transforms.v2 callable on (image, target), applied before the resize; it gets
    tv_tensors (Image, BoundingBoxes, Mask), so geometric transforms move boxes and masks with the image.
    """

    def __init__(self, root: Path, classes: list[str] | None = None, image_size: int | None = None, transform=None):
        self.ann_file, image_dirs = find_annotations(Path(root))
        coco = read_coco(self.ann_file)
        self.classes, category_label = match_classes(coco["categories"], classes, self.ann_file)
        self.image_dir = _image_dir(coco["images"], image_dirs, self.ann_file)
        self.image_size, self.transform = image_size, transform
        self.images = coco["images"]
        self.annotations: dict[int, list[dict]] = defaultdict(list)  # image id -> kept annotations
        for ann in coco["annotations"]:
            kept = _parse_annotation(ann, category_label, coco["category_ids"], self.ann_file)
            if kept is not None:
                self.annotations[ann["image_id"]].append(kept)

    @property
    def num_classes(self) -> int:
        """Classes including background (label 0): the size of a torchvision-style classification head."""
        return len(self.classes) + 1

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict]:
        info = self.images[i]
        image = load_image(self.image_dir / info["file_name"])  # [3, H, W]
        height, width = image.shape[-2:]
        if (info.get("height", height), info.get("width", width)) != (height, width):
            raise UserError(
                f"{self.image_dir / info['file_name']} is {width}x{height} but {self.ann_file} says "
                f"{info.get('width')}x{info.get('height')}"
            )
        anns = self.annotations.get(info["id"], [])
        boxes = [a["box"] for a in anns]
        try:
            masks = decode_masks([a["segmentation"] for a in anns], boxes, height, width)
        except UserError as err:
            raise UserError(f"{self.ann_file}, image {info['file_name']}: {err}") from None
        target = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([a["label"] for a in anns], dtype=torch.int64),
            "masks": masks,
            "iscrowd": torch.zeros(len(anns), dtype=torch.int64),
            "image_id": int(info["id"]),
            "orig_size": torch.tensor([height, width]),
        }
        if self.transform is not None:
            image, target = _apply_transform(self.transform, image, target)
        if self.image_size is not None:
            return resize_and_pad(image, target, self.image_size)
        return image, dict(target, size=torch.tensor(image.shape[-2:]))


@dataclass
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset
    classes: list[str]
    source: str
    """Where the data came from, in words, for logs and the model card."""


def load_splits(cfg) -> Splits:
    """The train/val/test datasets a TrainConfig or SegmentationConfig names: the fields data, classes,
    image_size, shapes_train, shapes_root, val_fraction and split_seed.

    No --data: the synthetic shapes (`shapes_folder`). --data: that COCO folder (`coco_splits`).
    """
    if cfg.data is None:
        root = shapes_folder(cfg.shapes_train, cfg.image_size, cfg.split_seed, cfg.shapes_root)
        source = f"synthetic shapes ({root.name}, seed {cfg.split_seed})"  # not the cache path: cards travel
    else:
        root = Path(cfg.data)
        source = f"COCO {root}"
    classes = list(cfg.classes) if cfg.classes else None
    return coco_splits(root, classes, cfg.image_size, cfg.val_fraction, cfg.split_seed, source)


def shapes_folder(n_train: int, image_size: int, seed: int, root: Path | None = None) -> Path:
    """The synthetic shapes, generated once (seed `seed`) into root/train, val and test: n_train training images,
    a tenth as many (at least 50) for validation and for test. `root` defaults to the capstones' cache root
    (dlshared.cache): ~/.cache/capstones/detector/shapes/<n>x<size>px, so that presets of different sizes do not
    regenerate each other's."""
    sizes = {"train": n_train, "val": max(50, n_train // 10), "test": max(50, n_train // 10)}
    default = cache_dir("detector", "shapes", f"{n_train}x{image_size}px")
    return ensure_shapes(Path(root or default), sizes, image_size, seed)


def coco_splits(
    root: Path, classes: list[str] | None, image_size: int, val_fraction: float, split_seed: int, source: str
) -> Splits:
    """A COCO folder's splits: its train/ and val/ (and test/, else val doubles as test) when it has them; any
    other folder is split by `split_seed`, `val_fraction` for val and as much again for test. val and test
    always use train's classes. `source` describes the data for logs and the model card."""
    if (root / "train").is_dir() and (root / "val").is_dir():
        train = CocoDetection(root / "train", classes, image_size)
        val = CocoDetection(root / "val", train.classes, image_size)
        if not (root / "test").is_dir():
            return Splits(train, val, val, train.classes, f"{source} (val doubles as test)")
        test = CocoDetection(root / "test", train.classes, image_size)
        return Splits(train, val, test, train.classes, source)
    full = CocoDetection(root, classes, image_size)
    order = np.random.default_rng(split_seed).permutation(len(full))
    n_hold = round(val_fraction * len(full))
    if len(full) < 3 or n_hold < 1 or 2 * n_hold >= len(full):
        raise UserError(
            f"{root}: {len(full)} images cannot be split into train/val/test with val_fraction {val_fraction}"
        )
    val, test, train = np.split(order, [n_hold, 2 * n_hold])
    subsets = [Subset(full, np.sort(part).tolist()) for part in (train, val, test)]
    return Splits(*subsets, full.classes, f"{source}, split seed {split_seed}")


def collate(batch: list[tuple[torch.Tensor, dict]]) -> tuple[torch.Tensor | list[torch.Tensor], list[dict]]:
    """Images stacked into [B, 3, S, S] when all have one size (else a list, as torchvision models accept);
    targets stay a list, since every image has its own number of objects."""
    images, targets = zip(*batch, strict=True)
    same = all(image.shape == images[0].shape for image in images)
    return (torch.stack(images) if same else list(images)), list(targets)


def find_annotations(root: Path) -> tuple[Path, list[Path]]:
    """The COCO JSON of `root` and the folders its images may be in."""
    if root.is_file():
        ann_file = root
    elif not root.is_dir():
        raise UserError(f"{root}: no such folder")
    elif (root / "annotations.json").is_file():
        ann_file = root / "annotations.json"
    else:
        found = sorted((root / "annotations").glob("instances_*.json"))
        if len(found) != 1:
            hint = f"; found several, pass one of them: {', '.join(map(str, found))}" if found else ""
            raise UserError(f"{root}: no annotations.json (COCO detection JSON) in this folder{hint}")
        ann_file = found[0]
    folder = ann_file.parent
    dirs = [folder, folder / "images"]
    if ann_file.name.startswith("instances_"):  # COCO 2017: annotations/instances_val2017.json + val2017/
        split, top = ann_file.stem.removeprefix("instances_"), folder.parent
        dirs += [top / split, top / "images" / split, folder / split]
    return ann_file, dirs


def read_coco(ann_file: Path) -> dict:
    """The parsed JSON, checked for the keys a detection file needs; adds `category_ids`, a set."""
    try:
        coco = json.loads(ann_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{ann_file}: invalid JSON ({err})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{ann_file}: cannot read ({err})") from None
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise UserError(f"{ann_file}: not a COCO detection file (no 'images' list)")
    if not isinstance(coco.get("categories"), list) or not coco["categories"]:
        raise UserError(f"{ann_file}: not a COCO detection file (no 'categories' list)")
    coco.setdefault("annotations", [])  # test splits ship without annotations
    for kind, entries, keys in (
        ("category", coco["categories"], ("id", "name")),
        ("image", coco["images"], ("id", "file_name")),
    ):
        for entry in entries:
            if not isinstance(entry, dict) or any(key not in entry for key in keys):
                raise UserError(f"{ann_file}: every {kind} needs {' and '.join(keys)}; found {entry!r:.200}")
    coco["category_ids"] = {c["id"] for c in coco["categories"]}
    return coco


def _parse_annotation(ann, category_label: dict[int, int], category_ids: set, ann_file: Path) -> dict | None:
    """{box xyxy, label, segmentation} of an annotation the targets keep, None for one they leave out."""
    if not isinstance(ann, dict) or "image_id" not in ann or ann.get("category_id") not in category_ids:
        raise UserError(f"{ann_file}: an annotation lacks image_id or a known category_id: {ann!r:.200}")
    if ann.get("iscrowd", 0) or ann["category_id"] not in category_label:
        return None
    try:
        x, y, w, h = (float(v) for v in ann["bbox"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{ann_file}: annotation {ann.get('id')} has no [x, y, w, h] bbox") from None
    if w <= 0 or h <= 0:
        return None
    return {
        "box": [x, y, x + w, y + h],
        "label": category_label[ann["category_id"]],
        "segmentation": ann.get("segmentation"),
    }


def match_classes(
    categories: list[dict], classes: list[str] | None, ann_file: Path
) -> tuple[list[str], dict[int, int]]:
    """(class names, {category id: label 1..K}), matching the file's categories to `classes` by name."""
    by_id = sorted(categories, key=lambda c: c["id"])
    if classes is None:
        classes = list(dict.fromkeys(str(c["name"]) for c in by_id))  # names in id order, once each
    classes = list(classes)
    label = {name: k + 1 for k, name in enumerate(classes)}
    category_label = {c["id"]: label[c["name"]] for c in by_id if c["name"] in label}
    if not category_label:
        raise UserError(
            f"{ann_file}: no category matches the classes; classes: {classes}, "
            f"categories in the file: {[c['name'] for c in by_id]}"
        )
    ignored = [c["name"] for c in by_id if c["name"] not in label]
    if ignored:
        warnings.warn(f"{ann_file}: ignoring categories not in classes: {ignored}", stacklevel=3)
    return classes, category_label


def load_image(path: Path) -> torch.Tensor:
    """[3, H, W] float32 in [0, 1]; grey, palette, RGBA and CMYK images become RGB (alpha dropped)."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))  # [H, W, 3] uint8
    except FileNotFoundError:
        raise UserError(f"{path}: image file missing") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise UserError(f"{path}: cannot read image ({err})") from None
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div_(255)


def decode_masks(segmentations: list, boxes: list[list[float]], height: int, width: int) -> torch.Tensor:
    """COCO segmentations (polygons, RLE compressed or uncompressed) -> [N, H, W] uint8. An annotation without
    a usable segmentation gets its box filled, so that every box has a mask."""
    masks = torch.zeros(len(segmentations), height, width, dtype=torch.uint8)
    for k, (seg, box) in enumerate(zip(segmentations, boxes, strict=True)):
        if isinstance(seg, list):  # polygons [[x1, y1, x2, y2, ...], ...]; fewer than 3 points: none
            seg = [p for p in seg if isinstance(p, list) and len(p) >= 6] or None
        rle = _to_rle(seg, height, width) if seg else None
        if rle is None:
            x1, y1, x2, y2 = box
            masks[k, max(0, round(y1)) : round(y2), max(0, round(x1)) : round(x2)] = 1
        else:
            with warnings.catch_warnings():  # pycocotools 2.0.x vs numpy 2: harmless, once per mask otherwise
                warnings.filterwarnings("ignore", "__array__ implementation doesn't accept a copy", DeprecationWarning)
                masks[k] = torch.from_numpy(mask_utils.decode(rle))
    return masks


def _to_rle(seg, height: int, width: int) -> dict | None:
    if isinstance(seg, list):
        return mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    if not isinstance(seg, dict) or "counts" not in seg:
        return None
    if list(seg.get("size", [])) != [height, width]:
        raise UserError(f"an RLE mask of size {seg.get('size')} on a {height}x{width} image")
    if isinstance(seg["counts"], list):  # uncompressed RLE
        return mask_utils.frPyObjects(seg, height, width)
    return seg  # compressed; pycocotools takes the counts as str or bytes


def resize_and_pad(image: torch.Tensor, target: dict, size: int) -> tuple[torch.Tensor, dict]:
    """Longer side -> `size`, then zero padding at the bottom and right to [size, size]. Boxes scale by exactly
    the factors the pixels did; masks use nearest-exact resampling (pixel centres stay aligned)."""
    height, width = image.shape[-2:]
    scale = size / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    target = dict(target, size=torch.tensor([new_h, new_w]))
    if (new_h, new_w) != (height, width):
        image = F.interpolate(image[None], (new_h, new_w), mode="bilinear", antialias=True)[0].clamp_(0, 1)
        masks = target["masks"][None].float()  # [1, N, H, W]: interpolate wants a batch dimension
        if masks.shape[1]:
            masks = F.interpolate(masks, (new_h, new_w), mode="nearest-exact")
        target["masks"] = masks.to(torch.uint8).reshape(-1, new_h, new_w)
        target["boxes"] = target["boxes"] * torch.tensor([new_w / width, new_h / height] * 2)
    padded = image.new_zeros(3, size, size)
    padded[:, :new_h, :new_w] = image
    masks = target["masks"].new_zeros(len(target["masks"]), size, size)
    masks[:, :new_h, :new_w] = target["masks"]
    return padded, dict(target, masks=masks)


def _apply_transform(transform, image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    """Run a torchvision v2 transform with tv_tensors, then hand back plain tensors again."""
    from torchvision import tv_tensors

    canvas = tuple(image.shape[-2:])
    target = dict(target)
    target["boxes"] = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=canvas)
    target["masks"] = tv_tensors.Mask(target["masks"])
    image, target = transform(tv_tensors.Image(image), target)
    plain = {k: v.as_subclass(torch.Tensor) if isinstance(v, torch.Tensor) else v for k, v in target.items()}
    return image.as_subclass(torch.Tensor), plain


def _image_dir(images: list[dict], candidates: list[Path], ann_file: Path) -> Path:
    """The first candidate folder that holds the first image; every listed image must be there."""
    if not images:
        return candidates[0]
    first = images[0]["file_name"]
    folder = next((d for d in candidates if (d / first).is_file()), None)
    if folder is None:
        raise UserError(f"{ann_file}: image {first} not found in {', '.join(map(str, candidates))}")
    missing = [im["file_name"] for im in images if not (folder / im["file_name"]).is_file()]
    if missing:
        raise UserError(
            f"{ann_file}: {len(missing)} listed image(s) missing under {folder}, e.g. {', '.join(missing[:3])}"
        )
    return folder
