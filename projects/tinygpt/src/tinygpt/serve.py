"""Prompt text in, streamed completion text out: the checks and decoding shared by `generate` and the demo, and
what makes generated text safe to print on a terminal.

A prompt must leave the model room to write: over MAX_PROMPT_CHARS characters, or as many tokens as the context
(`block_size`) or more, it is refused with a message saying so, never silently cut.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import torch

from dlshared.cli import UserError

from .artifacts import LoadedModel
from .generate import generate

MAX_NEW_TOKENS = 4096
MAX_PROMPT_CHARS = 100_000
"""Longer prompts are refused before they are tokenized: pasting a book costs nothing."""

# ANSI escape sequences: CSI (colours, cursor moves, clearing the screen), OSC (window title, hyperlinks), 2-byte ones
_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b\n]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_UNFINISHED = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b\n]*\x1b?)?\Z")  # a sequence that may still go on
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # control characters other than tab and newline


def check_request(
    loaded: LoadedModel, prompt: str, max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None
) -> list[int]:
    """The prompt's token ids, or a UserError saying what is wrong with the request."""
    if loaded.model.cfg.objective == "mlm":
        raise UserError(
            f"{loaded.run_dir.name} was trained with --objective mlm: an encoder fills masked tokens, it does not "
            f"continue a prompt; score it with `tinygpt eval`, or train a causal model (the default) to generate"
        )
    if not prompt:
        raise UserError("the prompt is empty: type at least one character")
    block = loaded.model.cfg.block_size
    if len(prompt) > MAX_PROMPT_CHARS:
        raise UserError(
            f"the prompt is {len(prompt):,} characters; prompts are limited to {MAX_PROMPT_CHARS:,} characters "
            f"and fewer tokens than the model's context ({block}): shorten it below {block} tokens"
        )
    ids = loaded.tokenizer.encode(prompt)
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


class TerminalText:
    """Streamed text made safe to print on a terminal: escape sequences and control characters are dropped, and
    the tail of a sequence still being generated is held back until it is complete (or the stream ends)."""

    def __init__(self):
        self.shown = 0  # characters of the text already handed out

    @staticmethod
    def clean(text: str) -> str:
        return _CONTROL.sub("", _ESCAPE.sub("", text))

    def update(self, text: str) -> str:
        """What to print now that the text so far is `text` (which extends the previous one)."""
        unfinished = _UNFINISHED.search(text, self.shown)
        end = unfinished.start() if unfinished else len(text)
        piece, self.shown = text[self.shown : end], end
        return self.clean(piece)

    def finish(self, text: str) -> str:
        """The rest of the final `text`, a cut-off sequence included (its escape character dropped)."""
        piece, self.shown = text[self.shown :], len(text)
        return self.clean(piece)


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
