"""What a run leaves to look at (dlshared.pictures), as PNG files and TensorBoard images: `train` writes
RUN/curves.png (the loss against steps, and the end-of-training evaluation) and, when a latent run trains its
autoencoder, RUN/autoencoder_curves.png; `eval` writes samples.png, a row per class of the samples it judged."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from dlshared.cli import UserError
from dlshared.monitor import RunLogger
from dlshared.pictures import curves_figure, eval_pictures_dir, pyplot, save_figures
from dlshared.training import Run

from .config import SHIPPED

SAMPLES_PER_CLASS = 10
"""Columns of samples.png: the first samples of each class that eval judged."""
MAX_ROWS = 20
"""Classes shown in samples.png (the first ones): past that the figure outgrows a page."""


def training_curves(history: list[dict], scores: dict | None):
    """The diffusion loss (one batch's, mean over processes, every --log-every steps) on a log scale; the judged
    accuracy and confident share of the end-of-training evaluation as points at the last step."""
    final = []
    if scores and history:
        final = [{"step": history[-1]["step"], "judged_accuracy": scores["accuracy"], "confident": scores["confident"]}]
    title = None
    if scores:
        setting = f"{scores['scheduler']}-{scores['steps']}, guidance {scores['guidance']:g}"
        title = f"end of training: {scores['samples']} samples ({setting}), FID {scores['fid']:.3f}"
    panels = {"diffusion loss": ["loss"], "share of samples": ["judged_accuracy", "confident"]}
    figure = curves_figure([*history, *final], panels, x="step", title=title)
    loss_axes, *judged_axes = figure.axes  # the second panel only when the run was judged
    loss_axes.set_yscale("log")
    for axes in judged_axes:  # one point: on the loss panel's steps, on the whole 0-1 scale
        axes.set(xlim=loss_axes.get_xlim(), ylim=(-0.02, 1.02))
    return figure


def save_training_curves(run: Run, history: list[dict], scores: dict | None) -> dict:
    """RUN/curves.png and its TensorBoard image (main process)."""
    return save_figures(run.dir, {"curves": training_curves(history, scores)}, log=run.log)


def save_autoencoder_curves(run: Run, history: list[dict]) -> dict:
    """RUN/autoencoder_curves.png: the latent preset's first phase, pixel MSE and KL against its own steps."""
    panels = {"pixel MSE": ["pixel_mse"], "KL (nats per image)": ["kl"]}
    figure = curves_figure(history, panels, x="step", title="autoencoder, trained before the U-Net")
    figure.axes[0].set_yscale("log")
    return save_figures(run.dir, {"autoencoder_curves": figure}, log=run.log)


def save_baseline_curves(run: Run, history: list[dict], panels: dict, scores: dict, **held_out: float) -> dict:
    """RUN/curves.png of a VAE or GAN run: `panels` of its history (running means every --log-every steps), with
    the `held_out` values and the judged accuracy (when judged) as points at the last step."""
    last = {"step": history[-1]["step"], **held_out}
    if scores:
        last |= {"judged_accuracy": scores["accuracy"], "confident": scores["confident"]}
    panels = {**panels, "share of samples": ["judged_accuracy", "confident"]}
    return save_figures(run.dir, {"curves": curves_figure([*history, last], panels, x="step")}, log=run.log)


def class_rows(samples: torch.Tensor, num_classes: int, per_class: int) -> torch.Tensor:
    """samples [n, C, H, W] of the classes in turn (0, 1, ..., K-1, 0, ...) -> [K * per_class, C, H, W]: row c
    holds the first `per_class` samples of class c, white where fewer were drawn."""
    rows = torch.ones(num_classes, per_class, *samples.shape[1:])
    for label in range(num_classes):
        drawn = samples[label::num_classes][:per_class]
        rows[label, : len(drawn)] = drawn
    return rows.flatten(0, 1)


def samples_figure(samples: torch.Tensor, classes: list[str], title: str):
    """A row per class (its name on the left) of the first samples eval drew for it ([n, C, H, W] in [0, 1])."""
    from .sample import make_grid  # here, not above: sample.py imports latent.py, which imports this module

    shown = classes[:MAX_ROWS]
    per_class = min(SAMPLES_PER_CLASS, math.ceil(len(samples) / len(classes)))
    rows = class_rows(samples, len(classes), per_class)[: len(shown) * per_class]
    grid = make_grid(rows, columns=per_class, scale=1)  # uint8 [H, W] or [H, W, 3]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.5, 1.4 + 0.42 * per_class), 0.9 + 0.42 * len(shown)))  # room for the title
    ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    row_height = grid.shape[0] / len(shown)
    names = [name[:24].replace("$", r"\$") for name in shown]  # names from card.json: text, never mathtext
    ax.set_yticks([row_height * (row + 0.5) for row in range(len(shown))], names, fontsize=8)
    ax.set_xticks([])
    more = f" (the first {len(shown)} of {len(classes)} classes)" if len(shown) < len(classes) else ""
    ax.set_title(title + more, fontsize=8)
    fig.tight_layout()
    return fig


def eval_title(kind: str, scores: dict, seed: int) -> str:
    """samples.png's title: the model, how it was sampled, and the judge's verdict on all the samples."""
    setting = (
        f" {scores['scheduler']}-{scores['steps']}, guidance {scores['guidance']:g}," if "scheduler" in scores else ""
    )
    verdict = f"judged accuracy {scores['accuracy']:.1%}, FID {scores['fid']:.2f} ({scores['samples']} samples)"
    return f"{kind},{setting} seed {seed}\n{verdict}"


def save_eval_pictures(run: Path, pictures: Path | None, samples: torch.Tensor, classes: list[str], title: str):
    """samples.png into --pictures, else the run folder (where TensorBoard gets it too), else nowhere for the
    shipped weights (dlshared.pictures.eval_pictures_dir). Returns {name: path}, what eval's JSON line lists."""
    folder = eval_pictures_dir(run, pictures, shipped=SHIPPED)
    if folder is None:
        return {}
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--pictures {folder}: not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    log = RunLogger(run) if folder.resolve() == Path(run).resolve() else None
    try:
        return save_figures(folder, {"samples": samples_figure(samples, classes, title)}, log=log)
    finally:
        if log is not None:
            log.close()
