"""Penn-Fudan pedestrians (the torchvision detection tutorial's dataset) -> the COCO folder `data.py` reads.

The download (https://www.cis.upenn.edu/~jshi/ped_html/PennFudanPed.zip) holds PNGImages/NAME.png and
PedMasks/NAME_mask.png, where a mask pixel is 0 for background and k for the k-th pedestrian. Each value k
becomes one "person" annotation with its own RLE mask and box, written by the same code as the synthetic
shapes, so both sets reach the loader in one format.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from dlshared.cli import UserError
from dlshared.outputs import staged_output

from .shapes import coco_annotation, write_atomic

URL = "https://www.cis.upenn.edu/~jshi/ped_html/PennFudanPed.zip"


def convert_pennfudan(src: Path, out: Path, overwrite: bool = False) -> dict:
    """Write out/images/<the original file names> and out/annotations.json; return the counts.

    Images are sorted by name and numbered 0..n-1, annotations 1..m (COCOeval reserves 0). Everything is written
    into a staging folder that becomes `out` only when complete (dlshared.outputs): `out` must be new or empty,
    or an earlier conversion replaced with `overwrite`.
    """
    src, out = Path(src), Path(out)
    image_dir, mask_dir = src / "PNGImages", src / "PedMasks"
    if not src.is_dir():
        raise UserError(f"{src}: no such folder (unzip {URL} first)")
    if not image_dir.is_dir() or not mask_dir.is_dir():
        raise UserError(f"{src}: expected the Penn-Fudan folders PNGImages/ and PedMasks/ in it")
    paths = sorted(p for p in image_dir.iterdir() if p.suffix.lower() == ".png")
    if not paths:
        raise UserError(f"{image_dir}: no .png images")
    # pair every image with its mask before writing anything: an incomplete unzip fails at once, with names
    missing = [p.name for p in paths if not (mask_dir / f"{p.stem}_mask.png").is_file()]
    if missing:
        raise UserError(
            f"{len(missing)} image(s) without a mask in {mask_dir}: {', '.join(missing[:3])} "
            f"(expected e.g. {Path(missing[0]).stem}_mask.png)"
        )

    with staged_output(out, overwrite, sources=(src,)) as stage:
        coco = _convert(paths, mask_dir, stage)
    return {"images": len(coco["images"]), "annotations": len(coco["annotations"]), "out": str(out)}


def _convert(paths: list[Path], mask_dir: Path, out: Path) -> dict:
    """Copy the images into out/images, turn each mask's instances into annotations, write annotations.json."""
    (out / "images").mkdir()
    images, annotations = [], []
    for image_id, path in enumerate(paths):
        mask_path = mask_dir / f"{path.stem}_mask.png"
        try:
            with Image.open(path) as image:
                width, height = image.size
            with Image.open(mask_path) as mask_image:
                # np.asarray of a palette ("P") image gives the palette indices, i.e. the instance ids; converting
                # to "L" first would replace them by the grey level of each palette colour
                instances = np.asarray(mask_image)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise UserError(f"cannot read {path} or {mask_path}: {err}") from None
        if instances.shape != (height, width):
            raise UserError(
                f"{mask_path}: expected a one-channel {width}x{height} instance mask like its image, "
                f"got shape {instances.shape}"
            )
        write_atomic(out / "images" / path.name, path.read_bytes())
        images.append({"id": image_id, "file_name": path.name, "width": width, "height": height})
        for value in np.unique(instances):
            if value != 0:  # 0 is background
                annotations.append(coco_annotation(len(annotations) + 1, image_id, 1, instances == value))
    coco = {
        "info": {"description": f"Penn-Fudan pedestrians ({URL}), converted by detector.pennfudan"},
        "images": images,
        "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
        "annotations": annotations,
    }
    write_atomic(out / "annotations.json", json.dumps(coco).encode())
    return coco
