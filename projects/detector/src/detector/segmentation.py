"""Semantic segmentation with a small U-Net (Ronneberger et al. 2015), written out: the lesson of course day 15.

Detection answers "which objects, and where is their box"; semantic segmentation answers "which class is each
pixel". The same COCO instance masks serve both: `semantic_target` paints them into one class-index map.

    image (B, 3, S, S) -> encoder: double conv, then (max-pool, double conv) x levels -> bottleneck (S / 2^levels)
      -> decoder: (upsample x2, concatenate the encoder map of that size, double conv) x levels
      -> 1x1 head -> logits (B, K+1, S, S), class 0 = background

The skip connections are the point: max-pooling throws away where things are exactly, and the decoder takes it
back from the encoder's full-resolution maps, so edges land on the right pixel.

Metric (`miou`): the confusion matrix is summed over the whole split, then IoU_c = TP / (TP + FP + FN) per class,
and mIoU is the mean over every class, background included, that occurs in the truth or the predictions (the
Pascal VOC convention). `miou_foreground` leaves background out: on images that are mostly background it is the
stricter number.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from dlshared.checkpoint import WEIGHTS_NAME, load_weights, save_weights
from dlshared.cli import UserError, short_reason
from dlshared.pictures import save_figures
from dlshared.seed import seed_everything

from .config import UNET_PROJECT, SegmentationConfig
from .data import collate
from .pictures import segmentation_curves
from .train import on_main_process, prepare_training, start_with_data

# --------------------------------------------------------------------------------------------------- model


def double_conv(c_in: int, c_out: int) -> nn.Sequential:
    """(conv3x3-BN-ReLU) x 2, the U-Net building block: two convs see 5 x 5 pixels at the block's scale."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class Up(nn.Module):
    """Upsample x2 with a learned 2x2 transposed conv, concatenate the skip map, then a double conv."""

    def __init__(self, c_in: int, c_skip: int, c_out: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(c_in, c_skip, 2, stride=2)
        self.conv = double_conv(2 * c_skip, c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)  # (B, c_skip, 2h, 2w)
        if x.shape[-2:] != skip.shape[-2:]:  # odd sizes: pooling floored them, so stretch to the skip's size
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([skip, x], dim=1))  # (B, c_out, H, W) from (B, 2 * c_skip, H, W)


class UNet(nn.Module):
    """widths[i] channels at stride 2^i; len(widths) - 1 pooling levels. Takes [0, 1] pixels, returns logits."""

    def __init__(self, num_classes: int, widths: Sequence[int] = (16, 32, 64, 128)):
        super().__init__()
        if len(widths) < 2:
            raise ValueError(f"widths {tuple(widths)}: need at least two (one encoder level and the bottleneck)")
        self.num_classes, self.widths = num_classes, tuple(widths)
        self.down = nn.ModuleList(
            double_conv(c_in, c_out) for c_in, c_out in zip((3, *widths[:-1]), widths, strict=True)
        )
        self.up = nn.ModuleList(Up(widths[i + 1], widths[i], widths[i]) for i in reversed(range(len(widths) - 1)))
        self.head = nn.Conv2d(widths[0], num_classes + 1, 1)  # + 1: background is class 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        skips = []
        x = images  # (B, 3, S, S)
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))  # (B, widths[i], S / 2^i, S / 2^i)
            skips.append(x)
        skips.pop()  # the bottleneck (B, widths[-1], S / 2^levels, ...) is x itself
        for up in self.up:
            x = up(x, skips.pop())  # one level finer per step, ending at (B, widths[0], S, S)
        return self.head(x)  # (B, K + 1, S, S)


# --------------------------------------------------------------------------------------------------- targets


def semantic_target(target: dict, size: int | tuple[int, int]) -> torch.Tensor:
    """Instance masks (N, H, W) + labels (N,) -> a class-index map (size, size) int64, background 0.

    Instances are painted in order, so where two overlap the later one wins. Masks of another size are resized
    (nearest neighbour, which keeps them binary).
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    out = torch.zeros(size, dtype=torch.int64)
    masks, labels = target["masks"], target["labels"]
    if len(labels) == 0:
        return out
    if tuple(masks.shape[-2:]) != size:
        masks = F.interpolate(masks[None].float(), size=size, mode="nearest")[0]
    for mask, label in zip(masks.bool(), labels.tolist(), strict=True):
        out[mask] = label
    return out


def semantic_batch(targets: list[dict], size: int) -> torch.Tensor:
    return torch.stack([semantic_target(t, size) for t in targets])  # (B, S, S)


# --------------------------------------------------------------------------------------------------- metric


def confusion_matrix(pred: torch.Tensor, truth: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) int64 pixel counts: row = true class, column = predicted class.

    Truth values outside [0, num_classes) (e.g. VOC's 255 "void" border) are ignored.
    """
    pred, truth = pred.reshape(-1).long(), truth.reshape(-1).long()
    keep = (truth >= 0) & (truth < num_classes)
    flat = truth[keep] * num_classes + pred[keep].clamp(0, num_classes - 1)
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes).cpu()


def miou(confusion: torch.Tensor, names: Sequence[str] | None = None) -> dict:
    """Per-class IoU and the means, from a confusion matrix (rows truth, columns prediction; class 0 background).

    IoU_c = TP / (TP + FP + FN). A class absent from both truth and predictions has no IoU (None) and is left out
    of the means. `miou` averages over all present classes including background (Pascal VOC); `miou_foreground`
    over the present classes 1..K.
    """
    confusion = confusion.double()
    tp = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - tp  # TP + FP + FN
    iou = tp / union.clamp(min=1)
    present = union > 0
    names = list(names) if names is not None else [str(i) for i in range(len(tp))]
    if len(names) != len(tp):
        raise ValueError(f"{len(names)} names for a {len(tp)}-class confusion matrix")

    def mean(selected: torch.Tensor) -> float | None:
        return iou[selected].mean().item() if selected.any() else None

    foreground = present.clone()
    foreground[0] = False
    return {
        "miou": mean(present),
        "miou_foreground": mean(foreground),
        "pixel_accuracy": (tp.sum() / confusion.sum().clamp(min=1)).item(),
        "iou": {n: (v if p else None) for n, v, p in zip(names, iou.tolist(), present.tolist(), strict=True)},
    }


@torch.no_grad()
def predict_mask(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """One image (3, S, S) in [0, 1] -> class-index map (S, S) int64 on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    return model(image[None].to(device)).argmax(1)[0].cpu()


@torch.no_grad()
def evaluate_segmentation(model: nn.Module, loader, device, names: Sequence[str], autocast=None) -> dict:
    """Confusion matrix summed over `loader` (images, targets batches), then `miou`."""
    model.eval()
    num_classes = len(names)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for images, targets in loader:
        truth = semantic_batch(targets, images.shape[-1])
        with autocast() if autocast is not None else contextlib.nullcontext():
            logits = model(images.to(device).contiguous(memory_format=torch.channels_last))
        confusion += confusion_matrix(logits.argmax(1), truth.to(device), num_classes)
    return miou(confusion, names) | {"confusion_matrix": confusion.tolist()}


# --------------------------------------------------------------------------------------------------- training


def dice_loss(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice, averaged over the classes present in the batch: logits (B, C, S, S), truth (B, S, S)."""
    probs = logits.float().softmax(1)
    onehot = F.one_hot(truth, logits.shape[1]).permute(0, 3, 1, 2).float()  # (B, C, S, S)
    inter = (probs * onehot).sum((0, 2, 3))
    total = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    present = onehot.sum((0, 2, 3)) > 0
    return 1 - (2 * inter[present] / total[present].clamp(min=1e-6)).mean()


def random_flips(images: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror each (image, class map) pair left-right with probability 1/2: images (B, 3, S, S), truth (B, S, S)."""
    flip = (torch.rand(len(images)) < 0.5).to(images.device)  # (B,)
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    truth = torch.where(flip[:, None, None], truth.flip(-1), truth)
    return images, truth


def evaluate_miou(model: nn.Module, dataset: Dataset, names: Sequence[str], cfg: SegmentationConfig, accelerator):
    """`miou` of `model` on a split, batched as in training."""
    loader = DataLoader(dataset, cfg.batch_size, collate_fn=collate, num_workers=cfg.num_workers)
    return evaluate_segmentation(model, loader, accelerator.device, names, accelerator.autocast)


def load_segmenter(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[UNet, dict]:
    """A trained U-Net from its run folder (card.json + model.safetensors), in eval mode, and its card."""
    from .artifacts import read_card

    run_dir = Path(run_dir)
    for name in ("card.json", WEIGHTS_NAME):
        if not (run_dir / name).is_file():
            raise UserError(f"{run_dir} holds no {name}: not a segmentation run folder")
    card = read_card(run_dir / "card.json", ("classes", "widths", "image_size"))
    try:
        model = UNet(len(card["classes"]), tuple(card["widths"])).to(device)
    except (TypeError, ValueError) as err:
        raise UserError(f"{run_dir / 'card.json'} describes no U-Net ({short_reason(err)})") from None
    return load_weights(model, run_dir / WEIGHTS_NAME).eval(), card


def train_segmentation(cfg: SegmentationConfig) -> dict:
    """Train a U-Net as `cfg` says, on the detector's data; returns the final metrics (also in RUN/metrics.json)."""
    # --- set-up: the run folder and data as train.py's, a U-Net for the model; all of it before the first step ---
    run, splits = start_with_data(UNET_PROJECT, cfg)
    accelerator, log = run.accelerator, run.log
    seed_everything(cfg.seed)
    names = ["background", *splits.classes]
    # channels-last memory: the layout oneDNN and cuDNN convolutions run fastest in (~1.4x on a 2-core CPU)
    model = UNet(len(splits.classes), cfg.widths).to(memory_format=torch.channels_last)
    parameters = sum(p.numel() for p in model.parameters())
    card = {"task": "segmentation", "classes": splits.classes, "widths": list(cfg.widths), "image_size": cfg.image_size}
    run.save_json(card | {"source": splits.source, "parameters": parameters}, "card.json")
    log.print(
        f"data: {splits.source}: {len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test "
        f"images, classes {names}; model: U-Net, {parameters:,} parameters"
    )
    model, loader, optimizer, scheduler, epochs = prepare_training(accelerator, model, splits.train, cfg)
    raw_model = accelerator.unwrap_model(model)
    progress = run.resume(raw_model, optimizer, scheduler) or {"epoch": 0, "step": 0, "history": []}
    epoch, step, history = progress["epoch"], progress["step"], progress["history"]
    meter = run.meter(epochs * len(loader), step, every=cfg.log_every, unit="images")

    # --- the loop: an epoch of optimizer steps, then validation and a checkpoint ---
    while epoch < epochs:
        loader.set_epoch(epoch)
        model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=accelerator.device)
        for images, targets in loader:
            images = images.contiguous(memory_format=torch.channels_last)  # (B, 3, S, S)
            truth = semantic_batch(targets, images.shape[-1]).to(images.device)  # (B, S, S) class indices
            if cfg.augment:
                images, truth = random_flips(images, truth)
            with accelerator.autocast():
                logits = model(images)  # (B, K + 1, S, S)
                loss = F.cross_entropy(logits.float(), truth)
                if cfg.dice_weight:
                    loss = loss + cfg.dice_weight * dice_loss(logits, truth)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss_sum += loss.detach()
            meter.step(step, len(targets) * accelerator.num_processes, loss=loss, lr=scheduler.get_last_lr()[0])
        epoch += 1

        with meter.paused():
            val = on_main_process(accelerator, evaluate_miou, raw_model, splits.val, names, cfg, accelerator)
            train_loss = accelerator.reduce(loss_sum, "mean").item() / len(loader)  # mean over processes
            row = {"val_miou": val["miou"], "val_miou_foreground": val["miou_foreground"]}
            history.append({"epoch": epoch, "train_loss": round(train_loss, 4), **row})
            log.scalars({"val/miou": val["miou"], "val/miou_foreground": val["miou_foreground"]}, step)
            foreground = val["miou_foreground"] or 0  # None when no foreground class was seen or predicted
            scores = f"val mIoU {val['miou']:.4f}  foreground {foreground:.4f}"
            log.print(f"epoch {epoch}/{epochs}  train loss {train_loss:.4f}  {scores}  {meter.rate:.0f} img/s")
            publish = partial(save_weights, raw_model, run.dir / WEIGHTS_NAME, {"epoch": str(epoch)})
            run.checkpoint(raw_model, optimizer, scheduler, publish, epoch=epoch, step=step, history=history)
    meter.close()
    train_seconds = round(meter.seconds, 1)

    # --- finish: the test split, once ---
    test = on_main_process(accelerator, evaluate_miou, raw_model, splits.test, names, cfg, accelerator)
    log.scalars({"test/miou": test["miou"]}, step)
    if run.is_main:  # RUN/curves.png and its TensorBoard copy: one process draws them
        save_figures(run.dir, {"curves": segmentation_curves(history)}, log=log, step=step)
    metrics = {
        "test_miou": test["miou"],
        "test_miou_foreground": test["miou_foreground"],
        "test_pixel_accuracy": test["pixel_accuracy"],
        "test_iou": test["iou"],
        "val_miou": history[-1]["val_miou"] if history else None,
        "epochs": epochs,
        "steps": step,
        "train_seconds": train_seconds,
        "train_images_per_s": round(meter.rate, 1),
        "parameters": parameters,
        "processes": accelerator.num_processes,
        "run_dir": str(run.dir),
        "history": history,
    }
    summary = f"done: test mIoU {test['miou']:.4f} (foreground {test['miou_foreground'] or 0:.4f})"
    return run.finish(metrics, f"{summary}, {train_seconds} s, run folder {run.dir}")
