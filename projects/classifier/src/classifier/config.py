"""Typed configuration of every verb, and the presets of `train` (tiny for tests, quick by default, full on GPUs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dlshared.cli import Fraction, NonNegative, NonNegativeFloat, Port, Positive, PositiveFloat, Probability, UserError
from dlshared.hub import HubRepoId

PROJECT = "classifier"
"""Name of the run folder family: runs/classifier/<name>/."""


@dataclass
class TrainConfig:
    # --- data ---
    data: Path | None = None
    """ImageFolder root: train/ and val/ (optionally test/) subfolders, or one folder of class folders split by
    seed. Unset: the bundled scikit-learn digits. With --dataset cifar10: where CIFAR-10 is downloaded/cached."""
    dataset: Literal["auto", "digits", "imagefolder", "cifar10"] = "auto"
    """auto = imagefolder when --data is given, else digits. cifar10 downloads through torchvision (online)."""
    image_size: Positive = 32
    """Side of the square images the model sees."""
    val_fraction: Fraction = 0.1
    """Share of the data held out for validation when the source has no val split."""
    test_fraction: Fraction = 0.2
    """Share held out for the final test when the source has no test split."""
    split_seed: NonNegative = 0
    """Seed of the train/val/test split (kept apart from --seed so the test set never moves)."""
    max_train_samples: Positive | None = None
    """Use only the first N training samples (quick experiments, tests)."""
    augment: bool = True
    """Random affine jitter (digits) or random resized crop + flip (photos) on training images."""
    num_workers: NonNegative = 0
    """DataLoader worker processes (0 = load in the training process; right for in-memory digits)."""

    # --- model ---
    backbone: str = "resnet-small"
    """resnet-small (the ResNet written in model.py), a torchvision classifier name (resnet18, mobilenet_v3_small,
    efficientnet_b0, ...) or timm/<name> (e.g. timm/resnet18)."""
    widths: tuple[Positive, ...] = (32, 64, 128)
    """resnet-small: channels of each stage (each stage after the first halves the resolution)."""
    blocks: tuple[Positive, ...] = (1, 1, 1)
    """resnet-small: residual blocks per stage."""
    pretrained: bool = False
    """Start from ImageNet weights (torchvision/timm backbones; needs the network once, then cached)."""
    freeze_epochs: NonNegative = 0
    """Transfer learning: train only the new head for this many epochs, then unfreeze the backbone."""
    backbone_lr_scale: NonNegativeFloat = 0.1
    """Discriminative learning rates: the pretrained backbone learns at lr * this (1.0 = same as the head)."""

    # --- optimisation ---
    epochs: Positive = 15
    """Passes over the training set, or more where a small set needs them to reach --min-steps."""
    min_steps: NonNegative = 300
    """At least this many optimizer steps, whatever the data size: 15 epochs of the bundled digits are 300 steps;
    15 epochs of a 200-image training set would be 60 (4 batches of 64 an epoch): it trains for 75 epochs instead."""
    batch_size: Positive = 64
    """Per-process batch size (the global batch is this x processes x grad_accum)."""
    optimizer: Literal["adamw", "sgd"] = "adamw"
    """AdamW (the default for training from scratch) or SGD with Nesterov momentum (the classic fine-tuning recipe)."""
    lr: PositiveFloat = 4e-3
    """Peak learning rate."""
    weight_decay: NonNegativeFloat = 5e-4
    """L2 penalty for SGD; decoupled decay for AdamW (each step shrinks weights by lr x this). Not applied to
    biases and norm scales."""
    momentum: Probability = 0.9
    """SGD momentum with --schedule cosine. OneCycle cycles momentum (SGD) or beta1 (AdamW) from 0.95 down to
    0.85 and back as the learning rate rises and falls (Smith 2018), overriding this value."""
    schedule: Literal["onecycle", "cosine"] = "onecycle"
    """onecycle: warm up then anneal (Smith 2018); cosine: linear warm-up then cosine decay to zero."""
    warmup_fraction: Fraction = 0.2
    """Share of the steps spent warming up."""
    label_smoothing: Probability = 0.1
    """Cross-entropy targets put this much probability on the wrong classes (less over-confident logits)."""
    grad_accum: Positive = 1
    """Accumulate gradients over this many batches per optimizer step."""
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    """Autocast precision (bf16 on recent CPUs and GPUs, fp16 with loss scaling on GPUs)."""
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps."""
    seed: NonNegative = 0
    """Seed of the weights, the data order and augmentation (the split has --split-seed)."""

    # --- run ---
    out: Path = Path("runs")
    """Root of the run folders: runs are written to OUT/classifier/NAME."""
    name: str | None = None
    """Run folder name (default: a timestamp). With --resume and no name: the newest run."""
    resume: bool = False
    """Continue the run named by --name from its last completed epoch."""
    overwrite: bool = False
    """Replace an earlier run of the same --name (without it, a non-empty run folder is refused)."""
    log_every: Positive = 20
    """Log loss, learning rate and throughput to TensorBoard every N optimizer steps."""
    stats_every: NonNegative = 100
    """Log activation and gradient statistics (forward/backward hooks) every N steps (0 = never)."""
    progress: bool = True
    """Show a progress bar."""

    def resolved_dataset(self) -> str:
        if self.dataset != "auto":
            return self.dataset
        return "imagefolder" if self.data is not None else "digits"


# seconds: a narrow net, a slice of digits, three epochs; what the tests run
TINY = TrainConfig(
    widths=(16, 32),
    blocks=(1, 1),
    epochs=3,
    min_steps=0,
    max_train_samples=512,
    batch_size=32,
    lr=1e-2,
    log_every=2,
    stats_every=4,
    progress=False,
)
# the GPU recipe on real data: fine-tune an ImageNet ResNet-18 on CIFAR-10 at 224 px
FULL = TrainConfig(
    dataset="cifar10",
    backbone="resnet18",
    pretrained=True,
    image_size=224,
    epochs=10,
    batch_size=128,
    optimizer="sgd",
    lr=0.05,
    weight_decay=5e-4,
    schedule="onecycle",
    freeze_epochs=1,
    backbone_lr_scale=0.1,
    mixed_precision="bf16",
    num_workers=8,
)
# quick = the defaults: minutes on a 2-core CPU, >= 99% test accuracy on digits (see README)
PRESETS: dict[str, TrainConfig] = {"tiny": TINY, "quick": TrainConfig(), "full": FULL}


def check_relations(cfg: TrainConfig) -> TrainConfig:
    """Rules between fields (each field alone is checked where it is declared): before any folder exists."""
    if cfg.backbone == "resnet-small" and len(cfg.widths) != len(cfg.blocks):
        raise UserError(f"--widths {cfg.widths} and --blocks {cfg.blocks}: give both one entry per stage")
    if cfg.val_fraction + cfg.test_fraction >= 1:
        raise UserError(
            f"--val-fraction {cfg.val_fraction} and --test-fraction {cfg.test_fraction} leave no training data"
        )
    return cfg


RESUME_MAY_CHANGE = ("num_workers", "device", "mixed_precision", "log_every", "stats_every", "progress")
"""Fields `train --resume` may change: how the run is executed and logged, not what it trains (not --epochs either:
the learning-rate schedule was laid out for the epochs the run started with)."""


@dataclass
class EvalArgs:
    ckpt: Path | None = None
    """Run folder, or an exported model.onnx / model.int8.onnx (evaluated with ONNX Runtime). Unset: newest run."""
    data: Path | None = None
    """Evaluate on another ImageFolder tree (its test/ or val/ split, or all of it) instead of the run's own."""
    split: Literal["test", "val"] = "test"
    """Which of the run's own splits to score (without --data)."""
    batch_size: Positive = 256
    """Images per forward pass."""
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps."""
    pictures: Path | None = None
    """Folder for the eval pictures, confusion.png and mistakes.png (unset: the run folder; nothing for the shipped
    weights)."""


@dataclass
class ExportArgs:
    ckpt: Path | None = None
    """Run folder to export (unset: the newest run)."""
    out: Path | None = None
    """Output folder (default: CKPT/export)."""
    format: Literal["onnx", "int8", "all"] = "all"
    """onnx = fp32 ONNX with a dynamic batch dimension; int8 = statically quantised (QDQ) ONNX; all = both."""
    calibration_batches: Positive = 8
    """Training batches of 32 images used to calibrate the int8 activation ranges."""
    overwrite: bool = False
    """Replace an earlier export in --out (only a folder an export wrote; anything else is refused)."""
    push_to_hub: HubRepoId = None
    """Upload the finished export folder to this Hugging Face Hub model repo ("your-name/model-name"; needs `hf
    auth login`)."""


@dataclass
class DemoArgs:
    ckpt: Path | None = None
    """Run folder to serve (unset: the newest run, else the quick-preset weights shipped with the package)."""
    host: str = "127.0.0.1"
    """Interface to bind; 0.0.0.0 exposes the demo to your network."""
    port: Port = 7860
    """Port to serve on (the next free one if it is taken)."""
    share: bool = False
    """Also open a public gradio.live link (off unless asked: anyone with the link can use the demo)."""
    runs: Path = Path("runs")
    """Where to look for (and put) runs."""


@dataclass
class BenchArgs:
    ckpt: Path | None = None
    """Run folder whose model to time (unset: the newest run; a freshly initialised quick model if none)."""
    batch_size: Positive = 64
    train_steps: Positive = 30
    """Timed training steps (after 5 warm-up steps)."""
    infer_batches: Positive = 50
    """Timed inference batches per engine."""
    runs: Path = Path("runs")
    """Where to look for the newest run."""
    profile: bool = False
    """Then profile the timed training step (torch.profiler, 3 steps recorded after 2): a Chrome trace (trace.json)
    and the top operators by self time (top_ops.txt, top_ops.md). The timings above are taken without it."""
    profile_out: Path | None = None
    """Folder for the profile (default: runs/classifier-profile/<timestamp>; giving it turns --profile on; an earlier
    profile there is replaced, any other non-empty folder refused)."""
