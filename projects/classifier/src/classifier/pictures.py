"""What a run leaves to look at: RUN/curves.png from `train`, confusion.png (and mistakes.png) from `eval`, drawn
with matplotlib; the TensorBoard confusion matrix of each epoch is the same figure."""

from __future__ import annotations

import numpy as np
import torch

from dlshared.pictures import curves_figure, pyplot


def training_curves(history: list[dict], label_smoothing: float):
    """Loss and accuracy per epoch, training and validation (an older run's records may lack the new keys)."""
    # the two losses differ by more than overfitting: training's targets are smoothed, validation's are not
    note = f"train: running mean over the epoch's augmented batches, loss with label smoothing {label_smoothing}"
    panels = {"loss": ["train_loss", "val_loss"], "accuracy": ["train_accuracy", "val_accuracy"]}
    fig = curves_figure(history, panels, x="epoch", title=note)
    return fig


def confusion_figure(matrix: list[list[int]], classes: list[str], title: str | None = None):
    """The confusion matrix as counts (rows: true class, columns: predicted)."""
    plt = pyplot()
    cm = np.asarray(matrix)
    size = max(4.0, 0.45 * len(classes))
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xlabel="predicted", ylabel="true")
    ax.set_xticklabels(classes, rotation=90)
    ax.set_yticklabels(classes)
    if len(classes) <= 20:  # beyond that the numbers no longer fit their cells
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, v, ha="center", va="center", color="white" if v > cm.max() / 2 else "black", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def mistakes_figure(dataset, wrong: list[int], predicted: list[int], classes: list[str], columns: int = 8):
    """The misclassified images `wrong` (indices into `dataset`), each titled true -> predicted."""
    plt = pyplot()
    rows = -(-len(wrong) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.2 * columns, 1.35 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, index, guess in zip(axes.flat, wrong, predicted, strict=False):
        image, label = dataset[index]  # [C, H, W] in [0, 1]: normalisation is inside the model
        pixels = image.permute(1, 2, 0).clamp(0, 1).numpy()
        ax.imshow(pixels[..., 0] if pixels.shape[-1] == 1 else pixels, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{classes[int(label)]} -> {classes[guess]}", fontsize=8, color="firebrick")
    fig.suptitle("misclassified test images: true -> predicted class", fontsize=9)
    fig.tight_layout()
    return fig


def eval_figures(metrics: dict, classes: list[str], dataset, logits: torch.Tensor, labels: torch.Tensor, most=24):
    """{"confusion": ..., "mistakes": ...} for `eval`: mistakes only when there are some (at most `most` shown)."""
    right = int(np.trace(np.asarray(metrics["confusion_matrix"])))
    title = f"accuracy {metrics['accuracy']:.2%} ({right} of {metrics['samples']})"
    figures = {"confusion": confusion_figure(metrics["confusion_matrix"], classes, title)}
    predicted = logits.argmax(dim=1)
    wrong = (predicted != labels).nonzero().flatten()[:most].tolist()  # eval's loader keeps the dataset's order
    if wrong:
        figures["mistakes"] = mistakes_figure(dataset, wrong, predicted[wrong].tolist(), classes)
    return figures
