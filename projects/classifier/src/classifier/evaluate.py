"""The metric, defined once: accuracy, per-class precision/recall and the confusion matrix (torchmetrics).

`train`, `eval` (PyTorch or ONNX Runtime) and the README all go through `classification_metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_precision,
    multiclass_recall,
)


@torch.no_grad()
def predict(forward: Callable[[torch.Tensor], torch.Tensor], batches: Iterable, device="cpu", gather=None):
    """Run `forward` over (images, labels) batches -> (logits [N, K], labels [N]) on the CPU.

    `gather` (e.g. `accelerator.gather_for_metrics`) collects the shards of a distributed evaluation.
    """
    all_logits, all_labels = [], []
    for images, labels in batches:
        logits = forward(images.to(device)).float()
        if gather is not None:
            logits, labels = gather((logits, labels.to(logits.device)))
        all_logits.append(logits.cpu())
        all_labels.append(labels.cpu())
    return torch.cat(all_logits), torch.cat(all_labels)


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    """Accuracy (micro: share of images right), cross-entropy, per-class precision/recall, confusion matrix."""
    k = len(classes)
    preds = logits.argmax(dim=1)
    precision = multiclass_precision(preds, labels, num_classes=k, average=None, zero_division=0)
    recall = multiclass_recall(preds, labels, num_classes=k, average=None, zero_division=0)
    return {
        "accuracy": multiclass_accuracy(preds, labels, num_classes=k, average="micro").item(),
        "loss": F.cross_entropy(logits, labels).item(),
        "samples": len(labels),
        "precision": {c: round(p, 6) for c, p in zip(classes, precision.tolist(), strict=True)},
        "recall": {c: round(r, 6) for c, r in zip(classes, recall.tolist(), strict=True)},
        "confusion_matrix": multiclass_confusion_matrix(preds, labels, num_classes=k).tolist(),
    }
