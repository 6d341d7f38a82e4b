"""Typed configuration of every verb, and the presets of `train`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Literal

import tyro

from dlshared.cli import NonNegative, NonNegativeFloat, Port, Positive, PositiveFloat
from dlshared.hub import HubRepoId

PROJECT = "multimodal"
"""Name of the run folder family: runs/multimodal/<name>/."""


@dataclass
class TrainConfig:
    # --- data ---
    data: Path | None = None
    """Image-caption pairs: open_clip's CSV (filepath,title columns) or a folder of images with same-named .txt
    captions. Unset: the embedded scenes (drawn on the fly, some colour-shape pairs held out of training)."""
    csv_separator: str = ","
    """The column separator of a --data CSV (open_clip's --csv-separator; "\\t" for its TSV files)."""
    train_scenes: Positive = 10_000
    """Embedded scenes: training pairs (validation and each test split get a tenth, at least 200)."""
    data_seed: NonNegative = 0
    """Seed of the embedded scenes (kept apart from --seed so the data never moves between training seeds)."""

    # --- model ---
    model: str = "clip-small"
    """An open_clip model: this project's clip-tiny / clip-small (built from scratch) or any open_clip name."""
    pretrained: str | None = None
    """An open_clip pretrained tag for --model (e.g. ViT-B-32 with laion2b_s34b_b79k): downloaded, online only."""

    # --- optimisation ---
    epochs: Positive = 8
    """Passes over the training pairs."""
    min_steps: NonNegative = 600
    """At least this many optimizer steps, whatever the data size: 8 epochs of the 10,000 embedded scenes are 624
    steps; 8 epochs of a 1,000-pair folder would be 56, so it gets 86 epochs instead (the log says `epoch 1/86`)."""
    batch_size: Positive = 128
    """Pairs per step: each image is contrasted with the batch's other captions (bigger = harder negatives)."""
    lr: PositiveFloat = 1e-3
    """AdamW peak learning rate (linear warm-up, cosine decay)."""
    warmup_steps: NonNegative = 100
    """Steps of linear warm-up."""
    weight_decay: NonNegativeFloat = 0.1
    """AdamW weight decay (on weight matrices only, as open_clip: not on gains, biases, embeddings or the scale)."""
    seed: NonNegative = 0
    """Training seed: initial weights and batch order."""
    log_every: Positive = 20
    """Steps between TensorBoard points."""
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    """Autocast through Accelerate (bf16 on a recent CPU or GPU)."""
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps."""

    # --- run ---
    out: Path = Path("runs")
    """Root of the run folders: runs are written to OUT/multimodal/NAME."""
    name: str | None = None
    """Run folder name (default: a timestamp). With --resume and no name: the newest run."""
    resume: bool = False
    """Continue the run named by --name from its last checkpoint."""
    overwrite: bool = False
    """Replace an earlier run of the same --name (without it, a non-empty run folder is refused)."""
    progress: bool = True
    """Show a progress bar."""


QUICK = TrainConfig()
TINY = TrainConfig(
    model="clip-tiny", train_scenes=512, epochs=2, min_steps=0, batch_size=64, warmup_steps=2, progress=False
)
FULL = replace(QUICK, model="ViT-B-32", pretrained="laion2b_s34b_b79k", lr=1e-5, batch_size=256, mixed_precision="bf16")
PRESETS = {"tiny": TINY, "quick": QUICK, "full": FULL}

ARCHITECTURE = ("model", "pretrained")
RESUME_MAY_CHANGE = (
    "epochs",
    "min_steps",
    "log_every",
    "device",
    "mixed_precision",
    "out",
    "name",
    "resume",
    "progress",
)
"""What a resumed run may change: how long and where it runs, not what it trains on or with."""


@dataclass
class EvalArgs:
    ckpt: Path | None = None
    """Run folder (default: the newest run under --runs)."""
    runs: Path = Path("runs")
    """Where to look for the newest run."""
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps."""


@dataclass
class ZeroShotArgs:
    data: Path
    """An ImageFolder tree: one sub-folder per class, its name the class name (red_circle -> "red circle")."""
    ckpt: Path | None = None
    """Run folder (default: the newest run under --runs)."""
    runs: Path = Path("runs")
    """Where to look for the newest run."""
    templates: tuple[str, ...] = ("a photo of a {}.", "a picture of a {}.", "{}")
    """Prompts per class, {} standing for the class name; their text embeddings are averaged."""
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps."""


@dataclass
class ExportArgs:
    ckpt: Path | None = None
    """Run folder (default: the newest run under --runs)."""
    runs: Path = Path("runs")
    """Where to look for the newest run."""
    out: Path | None = None
    """Folder to write (default: RUN/export). A folder this command did not write is refused."""
    overwrite: bool = False
    """Replace a folder an earlier export wrote."""
    push_to_hub: HubRepoId = None
    """Upload the finished export folder to this Hugging Face Hub model repo ("your-name/model-name"; needs `hf
    auth login`)."""


@dataclass
class IndexArgs:
    images: Path
    """A folder of images (searched recursively; links out of it and files over 50 MB are skipped)."""
    out: Path
    """The index folder: written the first time, updated after (only new or changed files are embedded)."""
    ckpt: Path | None = None
    """Run folder whose image tower embeds (default: the newest run under --runs)."""
    runs: Path = Path("runs")
    """Where to look for the newest run."""
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps."""


@dataclass
class SearchArgs:
    query: Annotated[str | None, tyro.conf.Positional] = None
    """The text to search for (or --image)."""
    index: Path = Path("index")
    """An index folder made by `multimodal index`."""
    image: Path | None = None
    """Search by a picture instead of a text."""
    k: Positive = 5
    """How many images to return."""
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps."""


@dataclass
class DemoArgs:
    ckpt: Path | None = None
    """Run folder. Unset: the newest under --runs, else the quick run shipped with the package."""
    runs: Path = Path("runs")
    """Where to look for the newest run."""
    images: Path | None = None
    """A folder of images to search (indexed at start). Unset: the run's own test scenes."""
    host: str = "127.0.0.1"
    port: Port = 7860
    share: bool = False
    """Open a public Gradio link (off unless asked)."""
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps."""


@dataclass
class BenchArgs:
    ckpt: Path | None = None
    """Run folder (default: the newest run under --runs)."""
    runs: Path = Path("runs")
    """Where to look for the newest run."""
    profile: bool = False
    """Then profile contrastive training steps of the run's model at its batch size (both towers, loss, backward,
    AdamW; torch.profiler, 3 recorded after 2): a Chrome trace (trace.json) and the top operators by self time
    (top_ops.txt, top_ops.md). The timings are taken without it."""
    profile_out: Path | None = None
    """Folder for the profile (default: RUNS/multimodal-profile/<timestamp>; giving it turns --profile on; an
    earlier profile there is replaced, any other non-empty folder refused)."""
