"""The metric, defined once: mean next-token cross-entropy (nats per token) over context windows of a split
(for an mlm model: the mean cross-entropy of its masked tokens, with the same positions masked on every call).

Windows start at evenly spaced offsets, so every number is deterministic: the same checkpoint and split always give
the same loss. Two estimators use it, under two names:
  val_loss           every non-overlapping window of the validation split (each token scored once): the end of
                     `train` and the `eval` verb, which reproduces train's figure exactly
  *_loss_estimate    eval_iters x batch_size windows spread over a split: train's periodic check, as cheap as
                     nanoGPT's estimate_loss (which draws that many windows at random)
Perplexity = exp(loss).
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from .data import mask_tokens
from .model import LanguageModel


@torch.no_grad()
def evaluate_loss(
    model: LanguageModel,
    ids: torch.Tensor,
    block_size: int,
    batch_size: int,
    max_windows: int | None = None,
    device: torch.device | None = None,
    autocast=None,
) -> float:
    """Mean cross-entropy of `model` on windows of `ids` (1-D token ids); all of them when `max_windows` is None."""
    device = device or next(model.parameters()).device
    last_start = len(ids) - block_size - 1
    if last_start < 0:
        raise ValueError(f"{len(ids)} tokens are fewer than one window of {block_size + 1}")
    n_windows = last_start // block_size + 1
    if max_windows is not None and max_windows < n_windows:
        starts = torch.linspace(0, last_start, max_windows).long()
    else:
        starts = torch.arange(0, last_start + 1, block_size)
    was_training = model.training
    model.eval()
    windows = ids.unfold(0, block_size + 1, 1)  # (N - T, T + 1): a view, nothing copied
    masking = torch.Generator().manual_seed(0) if model.cfg.objective == "mlm" else None
    total, count = 0.0, 0
    for batch_starts in starts.split(batch_size):
        chunk = windows[batch_starts].long().to(device)  # (B, T + 1)
        x, y = chunk[:, :-1], chunk[:, 1:]  # next-token targets
        if masking is not None:  # masked LM: the window's own tokens, 15% of them asked for
            x, y = mask_tokens(x, model.cfg.mask_id, masking)
        scored = int((y != -1).sum())
        if scored == 0:
            continue
        with autocast() if autocast is not None else nullcontext():
            _, loss = model(x, y)
        total += loss.item() * scored  # weighted by tokens scored: every token counts once
        count += scored
    model.train(was_training)
    return total / count


@torch.no_grad()
def loss_by_position(
    model: LanguageModel, ids: torch.Tensor, block_size: int, batch_size: int, max_windows: int = 256
) -> list:
    """Mean next-token loss at each position 0..T-1 of the window, over `max_windows` evenly spaced windows: how
    much each model gains from context (position 0 sees one token, T-1 sees the whole window)."""
    device = next(model.parameters()).device
    last_start = len(ids) - block_size - 1
    if last_start < 0:
        raise ValueError(f"{len(ids)} tokens are fewer than one window of {block_size + 1}")
    starts = torch.linspace(0, last_start, min(max_windows, last_start + 1)).long()
    windows = ids.unfold(0, block_size + 1, 1)
    was_training = model.training
    model.eval()
    total = torch.zeros(block_size)
    for batch_starts in starts.split(batch_size):
        chunk = windows[batch_starts].long().to(device)  # (B, T + 1)
        logits, _ = model(chunk[:, :-1])  # (B, T, vocab)
        losses = F.cross_entropy(logits.transpose(1, 2).float(), chunk[:, 1:], reduction="none")  # (B, T)
        total += losses.sum(dim=0).cpu()
    model.train(was_training)
    return (total / len(starts)).tolist()


def precision_autocast(device: torch.device, mixed_precision: str):
    """The autocast a run trained under (`--mixed-precision`), so that scoring it later gives its own numbers."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision)
    if dtype is None:
        return None
    return lambda: torch.autocast(device.type, dtype=dtype)


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))
