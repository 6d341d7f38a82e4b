"""Synthetic shapes written as COCO: the embedded default data, so the offline path is the real-data path.

Each image is a textured background (a colour gradient, low-frequency noise, stripes and thin lines) with a few
circles, squares and triangles of random size, colour and rotation, plus Gaussian pixel noise. Shapes are drawn in
order, so a later shape hides part of an earlier one; each annotation holds what stays *visible* (box, area and
RLE mask of the visible pixels), which is what a detector can see and what COCO means by a box.

A placement that would leave any shape (the new one, cut by the image border, or an earlier one, cut by the new
one) with less than MIN_VISIBLE_FRACTION of itself or MIN_VISIBLE_PIXELS is redrawn instead of dropped after
painting: every painted shape is labelled and every label is findable, so no unlabelled fragments teach the model
that a visible shape is background.

`style="outlined"` draws the same three classes another way, as a stand-in for a user's own data: ink outlines
of a few pixels around lightly tinted fills on plain paper, no texture. `detector shapes` writes such a folder.

Deterministic: image i depends only on (seed, i, image_size, object counts) through its own numpy Generator, so
the same arguments give byte-identical files, and a 100-image set equals the first 100 images of a 1000-image set.
"""

from __future__ import annotations

import json
import os
import zlib
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from dlshared.cli import UserError

CLASSES = ("circle", "square", "triangle")
STYLES = ("textured", "outlined")
GENERATOR_VERSION = 1
"""Bump when the drawing changes, so that ensure_shapes regenerates folders written by an older version."""
DEFAULT_SIZES = {"train": 1000, "val": 200, "test": 200}

SIZE_RANGE = (0.12, 0.45)  # nominal extent (circle diameter, square side, triangle height) / image side
MIN_VISIBLE_FRACTION, MIN_VISIBLE_PIXELS = 0.3, 40
MIN_COLOUR_DISTANCE = 90.0  # RGB Euclidean distance from the background and the shapes it touches
MAX_TRIES = 25  # placements tried per shape before it is left out


def write_shapes(
    out_dir: Path,
    n_images: int,
    image_size: int = 128,
    seed: int = 0,
    min_objects: int = 1,
    max_objects: int = 4,
    style: str = "textured",
) -> Path:
    """Write `out_dir/images/000000.png ...` and `out_dir/annotations.json` (COCO, with RLE masks).

    Image ids equal the file numbers (000042.png is image 42); annotation ids start at 1 because COCOeval uses
    0 for "unmatched". annotations.json is written last and atomically: a folder without it is incomplete.
    """
    params = _params(n_images, image_size, seed, min_objects, max_objects, style)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "annotations.json").unlink(missing_ok=True)  # from here on the folder reads as incomplete
    images, annotations = [], []
    for i in range(n_images):
        rng = np.random.default_rng([seed, i])
        pixels, objects = draw_image(rng, image_size, min_objects, max_objects, style)
        name = f"{i:06d}.png"
        buffer = BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
        write_atomic(out_dir / "images" / name, buffer.getvalue())
        images.append({"id": i, "file_name": name, "width": image_size, "height": image_size})
        for category, mask in objects:
            annotations.append(coco_annotation(len(annotations) + 1, i, category, mask))
    coco = {
        "info": {"description": "synthetic shapes (detector.shapes)", "generator": params},
        "images": images,
        "categories": [{"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(CLASSES)],
        "annotations": annotations,
    }
    write_atomic(out_dir / "annotations.json", json.dumps(coco).encode())
    return out_dir


def ensure_shapes(root: Path, sizes: dict[str, int] | None = None, image_size: int = 128, seed: int = 0) -> Path:
    """Generate root/train, root/val, root/test (or the splits `sizes` names) unless already there.

    A split is reused when its annotations.json records the same generation parameters and its images exist,
    so a changed size or seed regenerates it. Each split gets its own seed, derived from (seed, split name).
    """
    root = Path(root)
    for split, n_images in (DEFAULT_SIZES if sizes is None else sizes).items():
        split_seed = zlib.crc32(f"shapes/{seed}/{split}".encode())
        out = root / split
        if not _is_generated(out, _params(n_images, image_size, split_seed, 1, 4, "textured")):
            write_shapes(out, n_images, image_size, split_seed)
    return root


def draw_image(
    rng: np.random.Generator, size: int, min_objects: int = 1, max_objects: int = 4, style: str = "textured"
) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """One picture: (pixels [size, size, 3] uint8, [(category id 1..3, visible mask [size, size] bool), ...])."""
    yy, xx = np.mgrid[:size, :size] + 0.5  # pixel centres, [S, S] each
    outlined = style == "outlined"
    background = _paper(rng, size) if outlined else _background(rng, size, xx, yy)
    canvas = background.copy()  # [S, S, 3] float, 0..255
    kinds, masks, areas, colours = [], [], [], []
    for _ in range(rng.integers(min_objects, max_objects + 1)):
        for _ in range(MAX_TRIES):
            kind = int(rng.integers(len(CLASSES)))
            extent = rng.uniform(*SIZE_RANGE) * size
            centre = rng.uniform(0.35 * extent, size - 0.35 * extent, 2)  # shapes may be cut by the border a bit
            mask, area = _shape(CLASSES[kind], centre, extent, rng.uniform(0, 2 * np.pi), xx, yy)
            if not _visible_enough(mask.sum(), area):  # cut off by the border
                continue
            if not all(_visible_enough((m & ~mask).sum(), a) for m, a in zip(masks, areas, strict=True)):
                continue  # it would hide too much of an earlier shape
            if outlined:  # a tinted fill inside an ink line; the fill hides what lies below, as paint would
                colour = np.clip(background[mask].mean(0) + rng.uniform(-40, 40, 3), 0, 255)
                canvas[mask] = colour
                canvas[mask & ~_shrink(mask, max(1, round(size / 64)))] = rng.uniform(0, 90, 3)
            else:
                touched = [c for m, c in zip(masks, colours, strict=True) if (m & _grow(mask)).any()]
                colour = _pick_colour(rng, [background[mask].mean(0), *touched])
                # a gentle linear shading across the shape, so shapes are not perfectly flat either
                shade = rng.uniform(-12, 12, 2) @ np.stack([xx - centre[0], yy - centre[1]])[:, mask] / extent
                canvas[mask] = np.clip(colour + shade[:, None], 0, 255)
            masks = [m & ~mask for m in masks]
            kinds, areas, colours = [*kinds, kind], [*areas, area], [*colours, colour]
            masks.append(mask)
            break
    canvas += rng.normal(0, rng.uniform(1, 3) if outlined else rng.uniform(2, 8), canvas.shape)
    pixels = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return pixels, [(k + 1, m) for k, m in zip(kinds, masks, strict=True)]


def _background(rng: np.random.Generator, size: int, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Gradient between two random colours + low-frequency colour noise + stripes/lines: [S, S, 3] float."""
    a, b = rng.uniform(0, 255, (2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    t = (np.cos(angle) * xx + np.sin(angle) * yy) / size  # [S, S], spans about 1.4 at most
    t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    image = a + (b - a) * t[..., None]
    coarse = rng.normal(0, 25, (5, 5, 3))  # a 5x5 grid of colour offsets, interpolated bilinearly to S x S
    up = _linear_upsample(5, size)  # [S, 5]
    image += (up @ coarse.transpose(2, 0, 1) @ up.T).transpose(1, 2, 0)  # [3, S, S] -> [S, S, 3]
    if rng.random() < 0.4:  # soft stripes in a random colour direction
        period, phase, direction = rng.uniform(6, 20), rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)
        wave = np.sign(np.sin(2 * np.pi * (np.cos(direction) * xx + np.sin(direction) * yy) / period + phase))
        image += rng.uniform(8, 25) * wave[..., None] * rng.uniform(-1, 1, 3)
    for _ in range(rng.integers(0, 5)):  # thin straight lines across the image, partly transparent
        point, direction = rng.uniform(0, size, 2), rng.uniform(0, np.pi)
        distance = np.abs((xx - point[0]) * np.sin(direction) - (yy - point[1]) * np.cos(direction))
        line = distance < rng.uniform(0.5, 1.5)
        alpha = rng.uniform(0.4, 1.0)
        image[line] = (1 - alpha) * image[line] + alpha * rng.uniform(0, 255, 3)
    return np.clip(image, 0, 255)


def _paper(rng: np.random.Generator, size: int) -> np.ndarray:
    """A plain light background of one random tint: [S, S, 3] float."""
    return np.broadcast_to(rng.uniform(190, 250, 3), (size, size, 3)).copy()


def _shape(kind: str, centre: np.ndarray, extent: float, angle: float, xx, yy) -> tuple[np.ndarray, float]:
    """Pixels whose centre lies inside the shape ([S, S] bool) and the shape's full area in pixels, border or
    not, so that a shape mostly outside the image counts as mostly hidden."""
    dx, dy = xx - centre[0], yy - centre[1]
    if kind == "circle":
        r = extent / 2
        return dx**2 + dy**2 <= r * r, np.pi * r * r
    if kind == "square":
        u, v = np.cos(angle) * dx + np.sin(angle) * dy, -np.sin(angle) * dx + np.cos(angle) * dy
        return (np.abs(u) <= extent / 2) & (np.abs(v) <= extent / 2), extent * extent
    side = extent * 2 / np.sqrt(3)  # equilateral, its height is `extent`
    radius = side / np.sqrt(3)
    corners = [angle + k * 2 * np.pi / 3 for k in range(3)]
    px, py = radius * np.cos(corners), radius * np.sin(corners)
    # inside = on the same side of all three edges (corners go round in one direction, so: all >= 0)
    inside = np.ones_like(dx, dtype=bool)
    for k in range(3):
        j = (k + 1) % 3
        inside &= (px[j] - px[k]) * (dy - py[k]) - (py[j] - py[k]) * (dx - px[k]) >= 0
    return inside, np.sqrt(3) / 4 * side * side


def _visible_enough(pixels: int, area: float) -> bool:
    return pixels >= max(MIN_VISIBLE_PIXELS, MIN_VISIBLE_FRACTION * area)


def _grow(mask: np.ndarray) -> np.ndarray:
    """The mask plus its 4-neighbours: the shapes a new one touches, not only those it covers."""
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return grown


def _shrink(mask: np.ndarray, width: int) -> np.ndarray:
    """The mask without its outer `width` pixels (4-neighbour erosion): what is left inside an outline."""
    for _ in range(width):
        mask = mask & ~_grow(~mask)
    return mask


def _pick_colour(rng: np.random.Generator, neighbours: list[np.ndarray]) -> np.ndarray:
    """A random colour at least MIN_COLOUR_DISTANCE from every neighbour colour (the most distant of a few
    candidates when none is), so that each shape stands out from what surrounds it."""
    candidates = rng.uniform(0, 255, (16, 3))
    distance = np.linalg.norm(candidates[:, None] - np.asarray(neighbours)[None], axis=-1).min(1)  # [16]
    good = np.flatnonzero(distance >= MIN_COLOUR_DISTANCE)
    return candidates[good[0] if len(good) else distance.argmax()]


def _linear_upsample(n: int, size: int) -> np.ndarray:
    """[size, n] weights that interpolate n evenly spaced values linearly onto `size` pixel centres."""
    position = (np.arange(size) + 0.5) / size * (n - 1)
    return np.maximum(0, 1 - np.abs(position[:, None] - np.arange(n)[None]))


def coco_annotation(ann_id: int, image_id: int, category: int, mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category,
        "bbox": [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0],  # pixel i spans [i, i + 1)
        "area": int(mask.sum()),
        "iscrowd": 0,
        "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
    }


def _params(n_images: int, image_size: int, seed: int, min_objects: int, max_objects: int, style: str) -> dict:
    if n_images < 0 or image_size < 32 or seed < 0 or not 1 <= min_objects <= max_objects:
        raise UserError(
            f"shapes: need n_images >= 0, image_size >= 32, seed >= 0 and 1 <= min_objects <= max_objects; "
            f"got {n_images}, {image_size}, {seed}, {min_objects}, {max_objects}"
        )
    if style not in STYLES:
        raise UserError(f"shapes: style {style!r} is not one of {STYLES}")
    extra = {} if style == "textured" else {"style": style}  # folders written before styles existed stay valid
    return extra | {
        "name": "detector.shapes",
        "version": GENERATOR_VERSION,
        "n_images": n_images,
        "image_size": image_size,
        "seed": seed,
        "min_objects": min_objects,
        "max_objects": max_objects,
    }


def _is_generated(out: Path, params: dict) -> bool:
    try:
        coco = json.loads((out / "annotations.json").read_text(encoding="utf-8"))
        if coco["info"]["generator"] != params:
            return False
        return all((out / "images" / image["file_name"]).is_file() for image in coco["images"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary sibling, then rename: readers see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
