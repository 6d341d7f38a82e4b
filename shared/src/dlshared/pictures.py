"""What a run leaves to look at: `curves.png` from every `train`, and the pictures `eval` draws, as PNG files in the
run folder and as TensorBoard images.

    history = [{"step": 50, "train_loss": 1.9}, {"step": 100, "train_loss": 1.2, "val_loss": 1.3, "val_acc": 0.71}]
    figure = curves_figure(history, x="step", panels={"loss": ["train_loss", "val_loss"], "accuracy": ["val_acc"]})
    save_figures(run_dir, {"curves": figure}, log=run.log)   # RUN/curves.png + the TensorBoard image "curves"

A record may lack a key (validation runs less often than training): each curve plots the records that have it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .checkpoint import atomic_path


def pyplot():
    """matplotlib.pyplot on the Agg backend: a training machine has no display, and a demo thread must not open one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves_figure(
    history: Sequence[Mapping[str, Any]],
    panels: Mapping[str, Sequence[str]],
    x: str = "step",
    title: str | None = None,
):
    """One panel per entry of `panels` (its y label -> the history keys drawn in it), `x` on the horizontal axis.

    Keys name the curve in the legend with "_" as a space ("val_loss" -> "val loss"); a key no record has is left out,
    and a panel with none of its keys is left out too, so one call serves runs with and without validation."""
    plt = pyplot()
    drawn = {label: [key for key in keys if any(key in record for record in history)] for label, keys in panels.items()}
    drawn = {label: keys for label, keys in drawn.items() if keys}
    if not drawn:
        raise ValueError(f"no record in the history has any of {[k for keys in panels.values() for k in keys]}")
    fig, axes = plt.subplots(1, len(drawn), figsize=(4.6 * len(drawn), 3.2), squeeze=False)
    for ax, (label, keys) in zip(axes[0], drawn.items(), strict=True):
        for key in keys:
            points = [(record[x], record[key]) for record in history if key in record and x in record]
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, label=key.replace("_", " "), marker="o" if len(points) < 12 else None, markersize=3)
        ax.set(xlabel=x, ylabel=label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    whole_number_ticks(fig, sorted({record[x] for record in history if x in record}))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def whole_number_ticks(fig, xs: list) -> None:
    """Epochs and steps are whole numbers: ticks at each one while they fit (1, 2, 3, not 1.25; a lone epoch 1
    too), else a few whole ones. Other x values keep matplotlib's ticks."""
    from matplotlib.ticker import MaxNLocator

    if not xs or not all(float(v).is_integer() for v in xs):
        return
    for ax in fig.axes:
        if len(xs) <= 15:
            ax.set_xticks(xs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def save_figures(run_dir: str | os.PathLike, figures: Mapping[str, Any], log: Any = None, step: int = 0) -> dict:
    """Write each figure as RUN/<name>.png (atomically), hand it to TensorBoard through `log` (a RunLogger) when
    given, and close it. Returns {name: path}."""
    plt = pyplot()
    paths = {}
    for name, fig in figures.items():
        path = Path(run_dir) / f"{name}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        if log is not None:
            log.figure(name, fig, step)  # add_figure closes the figure itself
        plt.close(fig)
        paths[name] = str(path)
    return paths


def eval_pictures_dir(run_dir: str | os.PathLike, pictures: str | os.PathLike | None, shipped: Path | None = None):
    """Where `eval` writes its pictures: `--pictures DIR` when given, else the run folder it evaluates; None (write
    nothing, say so) for the weights a package ships, whose folder belongs to the installed package."""
    if pictures is not None:
        return Path(pictures)
    if shipped is not None and Path(run_dir).resolve() == Path(shipped).resolve():
        print(f"eval pictures: not written into the shipped weights' folder {run_dir}; pass --pictures DIR")
        return None
    return Path(run_dir)
