"""Typed configuration of every verb, and the presets of `train` and `segment` (tiny for tests, quick by default)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from dlshared.cli import Fraction, NonNegative, NonNegativeFloat, Port, Positive, PositiveFloat, Probability, UserError
from dlshared.hub import HubRepoId

PROJECT = "detector"
"""Name of the run folder family: runs/detector/<name>/."""
UNET_PROJECT = "detector-unet"
"""The U-Net runs of `detector segment`: runs/detector-unet/<name>/."""


@dataclass
class TrainConfig:
    # --- data ---
    data: Path | None = None
    """COCO-format folder: annotations.json + images, or train/ and val/ (optionally test/) subfolders that each
    hold one. A single folder is split by --split-seed. Unset: the synthetic shapes, generated once."""
    classes: tuple[str, ...] | None = None
    """Category names to learn, matched by name in the annotations (default: all categories of the file)."""
    image_size: Positive = 128
    """Images are resized so the longer side is this, then padded to a square."""
    shapes_train: Positive = 5000
    """Synthetic shapes: training images (validation and test get a tenth each, at least 50)."""
    shapes_root: Path | None = None
    """Where the synthetic shapes are written (default: ~/.cache/capstones/detector/shapes, or under $CAPSTONES_CACHE)."""
    val_fraction: Fraction = 0.15
    """Share of a single COCO folder held out for validation (and as much again for test)."""
    split_seed: NonNegative = 0
    """Seed of the synthetic shapes and of the train/val/test split of a single COCO folder."""
    augment: Literal["auto", "none", "flip", "dihedral"] = "auto"
    """Geometric augmentation (augment.py): flip = random horizontal mirror; dihedral = any mirror or quarter
    turn, for data without an up. auto: dihedral for the synthetic shapes, flip for --data."""
    shuffle_channels: bool | None = None
    """Randomly permute the RGB channels, for data whose colours carry no class (default: on for the shapes)."""
    num_workers: NonNegative = 0
    """DataLoader worker processes (0 = load in the training process)."""

    # --- model ---
    model: Literal[
        "centernet", "fasterrcnn_mobilenet", "maskrcnn_mobilenet", "fasterrcnn_resnet50", "maskrcnn_resnet50"
    ] = "centernet"
    """centernet: the project's own detector (model.py). The others: torchvision's R-CNN baselines (rcnn.py)."""
    pretrained: bool = False
    """R-CNNs only: start from torchvision's COCO (or ImageNet-backbone) weights; needs the internet once."""
    widths: tuple[Positive, ...] = (32, 64, 128)
    """CenterNet: backbone channels at strides 4, 8, 16."""
    depths: tuple[Positive, ...] = (1, 3, 3)
    """CenterNet: residual blocks at strides 4, 8, 16."""
    fpn_width: Positive = 64
    """CenterNet: channels of the merged stride-4 map the heads read."""

    # --- optimisation ---
    epochs: Positive = 8
    """Passes over the training set, or more where a small set needs them to reach --min-steps."""
    min_steps: NonNegative = 1000
    """At least this many optimizer steps, whatever the data size: 8 epochs of the 5,000 bundled shapes are 1,248
    steps at batch 32, while 8 epochs of a 400-image folder would be 96; it then trains for 84 epochs instead."""
    batch_size: Positive = 32
    """Per-process batch size."""
    lr: PositiveFloat = 2e-3
    """Peak AdamW learning rate (linear warm-up, then cosine decay)."""
    weight_decay: NonNegativeFloat = 1e-4
    """AdamW's decoupled weight decay."""
    warmup_fraction: Probability = 0.05
    """Share of the steps spent warming up."""
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    """Autocast precision (bf16 on recent CPUs and GPUs, fp16 with loss scaling on GPUs)."""
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps."""
    seed: NonNegative = 0
    """Seed of the weights, the data order and augmentation."""

    # --- evaluation ---
    score_threshold: Probability = 0.05
    """Detections below this score are dropped before NMS and mAP."""
    max_detections: Positive = 100
    """Detections kept per image, highest scores first."""

    # --- run ---
    out: Path = Path("runs")
    """Root of the run folders: runs are written to OUT/detector/NAME."""
    name: str | None = None
    """Run folder name (default: a timestamp). With --resume and no name: the newest run."""
    resume: bool = False
    """Continue the run --name (or the newest run with a resume.pt) from its last finished epoch."""
    overwrite: bool = False
    """Replace an earlier run of the same --name (without it, a non-empty run folder is refused)."""
    log_every: Positive = 10
    """Log the losses, learning rate and throughput to TensorBoard every N optimizer steps."""
    progress: bool = True
    """Show a progress bar."""

    def augmentation(self) -> tuple[str, bool]:
        """(geometric kind, shuffle channels) with `auto` resolved: the synthetic shapes have no up and random
        colours (dihedral + channel shuffle); real photographs get mirrors only."""
        kind = self.augment if self.augment != "auto" else ("flip" if self.data else "dihedral")
        shuffle = self.shuffle_channels if self.shuffle_channels is not None else self.data is None
        return kind, shuffle


PRESETS = {
    "quick": TrainConfig(),
    "tiny": TrainConfig(
        shapes_train=48,
        image_size=64,
        epochs=2,
        min_steps=0,
        batch_size=16,
        widths=(16, 16, 32),
        depths=(1, 1, 1),
        fpn_width=16,
        log_every=2,
        progress=False,
    ),
}


RESUME_MAY_CHANGE = (
    *("epochs", "min_steps", "num_workers", "device", "mixed_precision", "log_every", "progress", "shapes_root"),
    *("score_threshold", "max_detections"),
)
"""Fields `train/segment --resume` may change: how long and how the run executes, where the synthetic shapes are
cached, how it is evaluated; not what it trains (the schedule follows a new --epochs: its decay is recomputed)."""


@dataclass
class SegmentationConfig:
    """The `segment` verb: a U-Net on the same data as the detector (its masks become a class map)."""

    # --- data ---
    data: Path | None = None
    """COCO-format folder, as for `train` (masks from the segmentations). Unset: the synthetic shapes."""
    classes: tuple[str, ...] | None = None
    """Category names to learn, matched by name in the annotations (default: all categories of the file)."""
    image_size: Positive = 128
    """Images are resized so the longer side is this, then padded to a square."""
    shapes_train: Positive = 2000
    """Synthetic shapes: training images (validation and test get a tenth each, at least 50)."""
    shapes_root: Path | None = None
    val_fraction: Fraction = 0.15
    """Share of a single COCO folder held out for validation (and as much again for test)."""
    split_seed: NonNegative = 0
    """Seed of the synthetic shapes and of the split of a single COCO folder."""
    augment: bool = True
    """Random horizontal flips of image and mask together."""
    num_workers: NonNegative = 0
    """DataLoader worker processes (0 = load in the training process)."""

    # --- model ---
    widths: tuple[Positive, ...] = (16, 32, 64, 128)
    """U-Net channels per level; len(widths) - 1 poolings. The default has ~0.48M parameters."""

    # --- optimisation ---
    epochs: Positive = 10
    """Passes over the training set, or more where a small set needs them to reach --min-steps."""
    min_steps: NonNegative = 2000
    """At least this many optimizer steps, whatever the data size (10 epochs of the 2,000 bundled shapes at batch 8
    are 2,500 steps)."""
    batch_size: Positive = 8
    """Small batches: on a CPU budget the step count limits learning more than gradient noise does (batch 4 and
    8 both beat 16 at equal wall time on the shapes)."""
    lr: PositiveFloat = 1e-3
    """Peak AdamW learning rate (short linear warm-up, then cosine decay to 0); 3e-3 and 5e-4 learned slower."""
    weight_decay: NonNegativeFloat = 1e-4
    """AdamW's decoupled weight decay."""
    warmup_fraction: Probability = 0.05
    """Share of the steps spent warming up."""
    dice_weight: NonNegativeFloat = 1.0
    """Weight of a soft Dice loss added to cross-entropy (0: cross-entropy alone). Dice weighs every class
    equally, whatever its pixel count, which counters the ~85% background: +0.05 and +0.11 val mIoU over
    cross-entropy alone on two seeds (450 steps, 64 px shapes)."""
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps."""
    seed: NonNegative = 0
    """Seed of the weights, the data order and augmentation."""

    # --- run ---
    out: Path = Path("runs")
    """Runs go to OUT/detector-unet/NAME."""
    name: str | None = None
    """Run folder name (default: a timestamp). With --resume and no name: the newest U-Net run."""
    resume: bool = False
    """Continue the run --name (or the newest U-Net run) from its last finished epoch."""
    overwrite: bool = False
    """Replace an earlier run of the same --name (without it, a non-empty run folder is refused)."""
    log_every: Positive = 10
    """Log the loss, learning rate and throughput to TensorBoard every N optimizer steps."""
    progress: bool = True


SEGMENT_PRESETS = {
    "quick": SegmentationConfig(),
    "tiny": SegmentationConfig(
        shapes_train=32, image_size=64, epochs=2, min_steps=0, widths=(8, 16, 32), log_every=2, progress=False
    ),
}


@dataclass
class EvalArgs:
    ckpt: Path | None = None
    """Run folder (default: the newest run under --runs)."""
    data: Path | None = None
    """A COCO-format folder to evaluate on (default: the run's own test split)."""
    runs: Path = Path("runs")
    """Where to look for the newest run."""
    batch_size: Positive = 32
    """Images per forward pass."""
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps."""
    pictures: Path | None = None
    """Folder for the eval pictures, detections.png (unset: the run folder; nothing for the shipped weights)."""


@dataclass
class ExportArgs:
    ckpt: Path | None = None
    """Run folder (default: the newest run under --runs)."""
    runs: Path = Path("runs")
    """Where to look for the newest run."""
    out: Path | None = None
    """Output folder (default: CKPT/export): model.onnx and card.json, what a runtime needs beside the graph."""
    overwrite: bool = False
    """Replace an earlier export in --out (only a folder an export wrote; anything else is refused)."""
    push_to_hub: HubRepoId = None
    """Upload the finished export folder to this Hugging Face Hub model repo ("your-name/model-name"; needs `hf
    auth login`)."""


@dataclass
class DemoArgs:
    ckpt: Path | None = None
    """Detector run folder (default: the newest; a quick one is trained first when there is none)."""
    unet: Path | None = None
    """U-Net run folder for the segmentation tab (default: the newest under RUNS/detector-unet, if any)."""
    runs: Path = Path("runs")
    """Where to look for (and put) runs."""
    host: str = "127.0.0.1"
    """Interface to serve on; 0.0.0.0 exposes the demo to the network."""
    port: Port = 7860
    """Port to serve on (the next free one if it is taken)."""
    share: bool = False
    """Also open a public gradio.live link (off unless asked: anyone with the link can use the demo)."""
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps."""


@dataclass
class BenchArgs:
    preset: str = "quick"
    """Training preset whose model, image size and data are measured."""
    batch_size: Positive = 32
    """Images per timed call."""
    steps: Positive = 10
    """Timed calls of each kind."""
    warmup: NonNegative = 3
    """Untimed calls of each kind before timing."""
    shapes_root: Path | None = None
    """Where the preset's synthetic shapes are (default: ~/.cache/capstones/detector/shapes, or under $CAPSTONES_CACHE)."""
    profile: bool = False
    """Then profile the timed training step (torch.profiler, 3 steps recorded after 2): a Chrome trace (trace.json)
    and the top operators by self time (top_ops.txt, top_ops.md). The timings above are taken without it."""
    profile_out: Path | None = None
    """Folder for the profile (default: runs/detector-profile/<timestamp>; giving it turns --profile on; an
    earlier profile there is replaced, any other non-empty folder refused)."""


@dataclass
class ConvertArgs:
    """The `convert-pennfudan` verb: Penn-Fudan pedestrians -> a COCO folder `train --data` reads."""

    src: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="SRC")]
    """The unzipped PennFudanPed folder (PNGImages/ and PedMasks/ inside)."""
    out: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="OUT")]
    """Folder to write annotations.json and images/ to: a new or empty one (see --overwrite)."""
    overwrite: bool = False
    """Replace an earlier conversion in OUT (only a folder a conversion wrote; anything else is refused)."""


@dataclass
class ShapesArgs:
    """The `shapes` verb: a COCO folder of synthetic shapes (train/, val/, test/), e.g. in another drawing style,
    to try `train --data` on a small set of your own."""

    out: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="OUT")]
    """Folder to write train/, val/ and test/ to (each: annotations.json + images/): a new or empty one."""
    style: Literal["textured", "outlined"] = "outlined"
    """textured: the bundled data's look; outlined: ink outlines around tinted fills on plain paper."""
    train: Positive = 400
    """Training images."""
    val: Positive = 60
    """Validation images."""
    test: Positive = 120
    """Test images."""
    image_size: Positive = 128
    """Side of the square images."""
    seed: NonNegative = 1
    """Seed of the drawings (each split draws from its own stream of it)."""
    overwrite: bool = False
    """Replace an earlier folder this verb wrote in OUT (anything else is refused)."""


def check_relations(cfg: TrainConfig | SegmentationConfig) -> TrainConfig | SegmentationConfig:
    """Rules between fields (each field alone is checked where it is declared): before any folder exists."""
    if isinstance(cfg, SegmentationConfig):
        if len(cfg.widths) < 2:
            raise UserError(f"--widths {cfg.widths}: the U-Net needs two or more (one level and the bottleneck)")
        return cfg
    if cfg.model == "centernet":
        if len(cfg.widths) != 3 or len(cfg.depths) != 3:
            raise UserError(
                f"--widths {cfg.widths} --depths {cfg.depths}: the CenterNet has three stages (strides 4, 8, 16); "
                "give three of each"
            )
        if cfg.widths[0] < 2:
            raise UserError(f"--widths {cfg.widths}: the first stage needs 2 or more channels (its stem halves it)")
        if cfg.image_size % 4:
            raise UserError(f"--image-size {cfg.image_size}: use a multiple of 4, the CenterNet's output stride")
    return cfg
