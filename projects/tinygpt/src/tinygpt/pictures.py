"""What a run leaves to look at: RUN/curves.png from `train` (the losses and validation perplexity against steps)
and attention.png from `eval` (every head's attention over a prompt, in the first and the last layer).

The model attends through `F.scaled_dot_product_attention`, which returns no weights. `attention_maps` computes them
again from each block's own q/k projection of the input that block received (a forward pre-hook), so the path that
trains and samples stays as it is. Both architectures (gpt2 and llama, rotary positions included) and both
objectives (causal, and mlm's attention in both directions) are drawn; an LSTM has no attention to draw.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import torch

from dlshared.cli import UserError
from dlshared.pictures import curves_figure, pyplot, save_figures

from .artifacts import LoadedModel
from .evaluate import perplexity
from .model import GPT, CausalSelfAttention, apply_rope

LOSS_KEYS = ["batch_loss", "train_loss_estimate", "val_loss_estimate", "val_loss"]
PERPLEXITY_KEYS = ["val_perplexity_estimate", "val_perplexity"]
VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}
"""Characters a tick label would show as nothing, drawn as a sign instead."""


def curves(history: list[dict], batch_losses: list[dict], val_loss: float, title: str | None = None):
    """train's numbers against the step: the batch loss every log_interval, the train/val estimates every
    eval_interval, and the final val_loss over every validation window; validation perplexity beside them."""
    estimates = [{**h, "val_perplexity_estimate": perplexity(h["val_loss_estimate"])} for h in history]
    final = {"iter": history[-1]["iter"], "val_loss": val_loss, "val_perplexity": perplexity(val_loss)}
    records = sorted([*batch_losses, *estimates, final], key=lambda record: record["iter"])  # stable: lines in order
    panels = {"loss (nats per token)": LOSS_KEYS, "validation perplexity": PERPLEXITY_KEYS}
    return curves_figure(records, panels, x="iter", title=title)


def _keep_input(inputs: dict, layer: int, module, args) -> None:
    inputs[layer] = args[:2]  # (x, rope): what the block's attention projected q and k from


def head_weights(attn: CausalSelfAttention, x: torch.Tensor, rope) -> torch.Tensor:
    """softmax(q k^T / sqrt(D)) of every head, (B, H, T, T): the weights scaled_dot_product_attention applies,
    computed from the module's own projection (and rotation) of its input x (B, T, C)."""
    B, T, C = x.shape
    H, D = attn.cfg.n_head, attn.cfg.head_dim
    q, k, _ = attn.qkv(x).split(C, dim=2)
    q, k = (t.view(B, T, H, D).transpose(1, 2) for t in (q, k))  # (B, H, T, D)
    if rope is not None:
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
    scores = (q @ k.transpose(-2, -1)).float() / math.sqrt(D)  # (B, H, T, T)
    if attn.cfg.causal:  # a token sees itself and the tokens before it
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(diagonal=1)
        scores = scores.masked_fill(future, float("-inf"))
    return scores.softmax(dim=-1)


@torch.no_grad()
def attention_maps(model: GPT, ids: torch.Tensor) -> list[torch.Tensor]:
    """The attention weights (H, T, T) of every layer for one sequence of token ids (T,), in eval mode."""
    inputs: dict[int, tuple] = {}
    hooks = [
        block.attn.register_forward_pre_hook(partial(_keep_input, inputs, i)) for i, block in enumerate(model.blocks)
    ]
    was_training = model.training
    model.eval()
    try:
        model(ids[None].to(next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return [head_weights(block.attn, *inputs[i])[0].cpu() for i, block in enumerate(model.blocks)]


def token_labels(tokenizer, ids: list[int]) -> list[str]:
    """Each token as text, with spaces, newlines and tabs made visible."""
    labels = []
    for token in ids:
        text = tokenizer.decode([token])
        labels.append("".join(VISIBLE.get(ch, ch) for ch in text) or "∅")
    return labels


def attention_figure(maps: list[torch.Tensor], labels: list[str], prompt: str):
    """One heatmap per head (columns) for the first and the last layer (rows): row i is what token i attends to."""
    plt = pyplot()
    layers = sorted({0, len(maps) - 1})
    heads = maps[0].shape[0]
    size = min(3.4, max(2.0, 0.11 * len(labels)))  # inches a map: about 8 pixels a token at 110 dpi
    figsize = (size * heads + 0.8, size * len(layers) + 0.6)
    fig, axes = plt.subplots(len(layers), heads, figsize=figsize, squeeze=False, layout="constrained")
    font = 7 if len(labels) <= 32 else 5
    ticks = range(len(labels))
    characters = all(len(label) == 1 for label in labels)  # a character model's labels stand upright
    for row, layer in enumerate(layers):
        for head in range(heads):
            ax = axes[row][head]
            image = ax.imshow(maps[layer][head].numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
            ax.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=8)
            ax.set_xticks(ticks, labels, fontsize=font, rotation=0 if characters else 90)
            ax.set_yticks(ticks, labels if head == 0 else [], fontsize=font)
            ax.tick_params(length=0, pad=1)
    axes[-1][0].set_xlabel("attends to (key)", fontsize=7)
    axes[-1][0].set_ylabel("token (query)", fontsize=7)
    fig.colorbar(image, ax=axes, shrink=0.5, aspect=30, label="attention weight")
    shown = prompt if len(prompt) <= 60 else prompt[:57] + "..."
    fig.suptitle(f"attention over {shown!r} ({len(labels)} tokens)", fontsize=9)
    return fig


def prompt_ids(loaded: LoadedModel, prompt: str) -> list[int]:
    """The prompt's token ids, or a one-line error: it must be at least one token and fit the model's context."""
    if not prompt:
        raise UserError("--prompt is empty: attention.png needs at least one token")
    ids = loaded.tokenizer.encode(prompt)
    block = loaded.model.cfg.block_size
    if len(ids) > block:
        raise UserError(f"--prompt is {len(ids)} tokens; this model attends over at most {block}: shorten it")
    return ids


def eval_pictures(loaded: LoadedModel, prompt: str, folder: Path) -> dict:
    """attention.png of `prompt` in `folder` ({name: path}); nothing for an LSTM, which has no attention."""
    if not isinstance(loaded.model, GPT):
        print(f"eval pictures: {loaded.model.cfg.arch} has no attention to draw; attention.png not written")
        return {}
    ids = prompt_ids(loaded, prompt)
    maps = attention_maps(loaded.model, torch.tensor(ids))
    figure = attention_figure(maps, token_labels(loaded.tokenizer, ids), prompt)
    Path(folder).mkdir(parents=True, exist_ok=True)
    return save_figures(folder, {"attention": figure})
