"""Prompt text in, streamed completion text out: the checks and decoding shared by `generate` and the demo."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from dlshared.cli import UserError

from .artifacts import LoadedModel
from .generate import generate

MAX_NEW_TOKENS = 4096


def check_request(
    loaded: LoadedModel, prompt: str, max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None
) -> list[int]:
    """The prompt's token ids, or a UserError saying what is wrong with the request."""
    if not prompt:
        raise UserError("the prompt is empty: type at least one character")
    ids = loaded.tokenizer.encode(prompt)
    block = loaded.model.cfg.block_size
    if len(ids) >= block:
        raise UserError(
            f"the prompt is {len(ids)} tokens; this model reads at most {block} tokens of context "
            f"and needs room to write: shorten it below {block} tokens"
        )
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise UserError(f"max new tokens must be between 1 and {MAX_NEW_TOKENS}, got {max_new_tokens}")
    if temperature < 0:
        raise UserError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise UserError(f"top-k must be at least 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise UserError(f"top-p must be in (0, 1], got {top_p}")
    return ids


def stream_completion(
    loaded: LoadedModel,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = 200,
    top_p: float | None = None,
    seed: int = 1337,
    use_cache: bool = True,
) -> Iterator[str]:
    """Yield the completion so far (without the prompt) each time it grows by whole characters."""
    ids = check_request(loaded, prompt, max_new_tokens, temperature, top_k, top_p)
    idx = torch.tensor([ids], device=loaded.device)
    generator = torch.Generator(device=loaded.device).manual_seed(seed)
    text, pending = "", []
    for token in generate(loaded.model, idx, max_new_tokens, temperature, top_k, top_p, use_cache, generator):
        pending.append(token.item())
        piece = loaded.tokenizer.decode(pending)
        if not piece.endswith("\ufffd"):  # a byte-level token can end mid-character: wait for the rest
            text, pending = text + piece, []
            yield text
    if pending:
        yield text + loaded.tokenizer.decode(pending)
