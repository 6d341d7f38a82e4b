"""The `sample` verb: draw samples of chosen classes with a chosen sampler and write them as PNG files; the
checks and helpers the demo shares."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dlshared.cli import UserError
from dlshared.outputs import check_output_folder, safe_filename, staged_output

from .artifacts import find_run, load_model, load_pipeline
from .config import MAX_SAMPLES, SampleArgs, SamplingArgs


def check_sampling_args(args: SamplingArgs, num_classes: int, digit: int | None = None, n: int = 1) -> None:
    """Every value a user can get wrong, as one clear sentence (the CLI and the demo share these checks)."""
    if digit is not None and not 0 <= digit < num_classes:
        raise UserError(f"--class must be between 0 and {num_classes - 1}, got {digit}")
    if args.steps < 1:
        raise UserError(f"--steps must be at least 1, got {args.steps}")
    if args.steps > 1000:
        raise UserError(f"--steps must be at most 1000 (the number of training timesteps), got {args.steps}")
    if not 0 <= args.guidance <= 50:
        raise UserError(f"--guidance must be between 0 and 50, got {args.guidance}")
    if not 1 <= n <= MAX_SAMPLES:
        raise UserError(f"--n must be between 1 and {MAX_SAMPLES}, got {n}")


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[B, C, H, W] in [0, 1] -> [B, H, W] (grayscale) or [B, H, W, 3] uint8."""
    array = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return array[..., 0] if array.shape[-1] == 1 else array


def make_grid(images: torch.Tensor, columns: int | None = None, scale: int = 4, pad: int = 1) -> np.ndarray:
    """[B, C, H, W] in [0, 1] -> one uint8 image, tiles upscaled `scale` times (nearest: the pixels stay pixels)."""
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    b, c, h, w = images.shape
    tiles = torch.ones(rows * columns, c, h, w)  # empty cells stay white
    tiles[:b] = images.cpu().float()
    tiles = F.pad(tiles, (pad,) * 4, value=1.0)
    h, w = h + 2 * pad, w + 2 * pad
    grid = tiles.reshape(rows, columns, c, h, w).permute(2, 0, 3, 1, 4).reshape(1, c, rows * h, columns * w)
    grid = F.interpolate(grid, scale_factor=scale, mode="nearest")
    return to_uint8(grid)[0]


def generate(args: SamplingArgs, labels: torch.Tensor, pipe=None, trajectory_points: int = 0):
    """Samples of `labels` [N] with the sampler, steps, guidance and seed of `args` (pipeline.py)."""
    pipe = pipe or load_pipeline(find_run(args.ckpt, args.runs), args.device)
    generator = torch.Generator(args.device).manual_seed(args.seed)
    return pipe(labels, args.steps, args.guidance, generator, args.scheduler, trajectory_points=trajectory_points)


def write_samples(args: SampleArgs) -> dict:
    """The `sample` verb: --n samples of --class (or the classes in turn) as PNG files plus grid.png.

    --out is staged and renamed into place (dlshared.outputs): a folder sample did not write is never written
    into, an earlier sample folder is replaced only with --overwrite. Class names come from the run's card.json,
    an artefact anyone can edit, so they become file names only through safe_filename ("../x" -> "_x")."""
    run = find_run(args.ckpt, args.runs)
    if not run.exists():
        raise UserError(f"--ckpt {run}: no such folder")
    check_output_folder(args.out, args.overwrite, sources=(run,))  # refused before any sampling is done
    pipe, classes = load_model(run, args.device)
    check_sampling_args(args, len(classes), args.digit, args.n)
    labels = torch.full((args.n,), args.digit) if args.digit is not None else torch.arange(args.n) % len(classes)
    images = generate(args, labels, pipe).images
    names = [safe_filename(name, fallback="class") for name in classes]
    with staged_output(args.out, args.overwrite, sources=(run,)) as stage:
        for index, (image, label) in enumerate(zip(to_uint8(images), labels.tolist(), strict=True)):
            Image.fromarray(image).save(stage / f"{names[label]}_{index}.png")
        columns = len(classes) if args.digit is None and args.n >= len(classes) else None  # a row per class round
        Image.fromarray(make_grid(images, columns)).save(stage / "grid.png")
    out = Path(args.out).resolve()
    return {
        "out": str(out),
        "files": len(images),
        "grid": str(out / "grid.png"),
        "scheduler": args.scheduler,
        "steps": args.steps,
        "guidance": args.guidance,
        "seed": args.seed,
    }
