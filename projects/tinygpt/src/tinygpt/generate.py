"""Sampling, written out (course day 26): greedy, temperature, top-k and top-p (nucleus), with or without a KV cache.

`generate` is a generator: it yields each new token as soon as it exists, so the CLI and the demo can stream.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .model import LanguageModel


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """logits (B, vocab) of the last position -> next token ids (B, 1). temperature 0 means greedy."""
    if temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None and 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1): the k-th largest logit
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0 < top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # drop a token when the tokens ranked above it already hold top_p of the mass (the first always stays)
        drop_sorted = cumulative - sorted_logits.softmax(dim=-1) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


@torch.no_grad()
def generate(
    model: LanguageModel,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> Iterator[torch.Tensor]:
    """Continue idx (B, T); yields each new token (B, 1).

    Without a cache every step recomputes the whole (cropped) context: O(T^2) work per token. With one, each step
    feeds only the newest token and attends to the stored keys and values. When the context window is full the
    cache is refilled from the last 3/4 of the window (recompute would slide by one token instead, so beyond
    the window the two paths may differ; within it they agree token for token).
    """
    model.eval()
    block = model.cfg.block_size
    if idx.size(1) == 0:
        raise ValueError("the prompt is empty: give at least one token")
    dtype = next(model.parameters()).dtype
    cache = None  # the model's own: a KVCache (GPT) or the recurrent state (LSTM)
    next_input = idx
    for _ in range(max_new_tokens):
        if not use_cache:
            logits, _ = model(idx[:, -block:])
        else:
            if cache is None or cache.length + next_input.size(1) > block:
                keep = idx[:, -(block * 3 // 4 or 1) :] if idx.size(1) >= block else idx
                cache = model.new_cache(idx.size(0), block, idx.device, dtype)
                next_input = keep
            logits, _ = model(next_input, cache=cache)
        token = sample_next(logits[:, -1, :], temperature, top_k, top_p, generator)
        idx = torch.cat([idx, token], dim=1)
        next_input = token
        yield token
