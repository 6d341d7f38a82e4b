"""The Gradio demo: a prompt -> a streamed completion, with temperature, top-k, top-p and length controls, example
prompts, and the prompt shown as the tokenizer splits it.

`build_demo(loaded)` only builds the app; `tinygpt demo` launches it on 127.0.0.1. A bad request (empty or
over-long prompt, out-of-range setting) becomes a message under the output, never a stack trace.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterator

import gradio as gr

from dlshared.cli import UserError

from .artifacts import LoadedModel
from .serve import MAX_PROMPT_CHARS, stream_completion


def model_summary(loaded: LoadedModel) -> str:
    cfg, tok = loaded.model.cfg, loaded.tokenizer
    return (
        f"**{html.escape(loaded.run_dir.name)}**: {cfg.arch}, {cfg.n_layer} layers x {cfg.n_head} heads x {cfg.n_embd} wide, "
        f"{loaded.model.num_params():,} parameters, context {cfg.block_size} tokens, "
        f"{tok.kind} tokenizer ({tok.vocab_size} tokens), on {loaded.device}."
    )


EXAMPLE_PROMPTS = ["def ", "class Stack:\n    def __init__(self):\n", "import os\n\n\ndef main(", "for i in range("]


def prompt_tokens(loaded: LoadedModel, prompt: str | None) -> list[tuple[str, str]]:
    """The prompt as the model reads it: each token's text beside its id (a newline shown as \\n)."""
    ids = loaded.tokenizer.encode((prompt or "")[:MAX_PROMPT_CHARS])
    return [(loaded.tokenizer.decode([i]).replace("\n", "\\n"), str(i)) for i in ids]


def build_demo(loaded: LoadedModel) -> gr.Blocks:
    def complete(
        prompt: str, max_new_tokens: float, temperature: float, top_k: float, top_p: float, seed: float
    ) -> Iterator[tuple[str, str]]:
        # the sliders send floats; top-k 0 and top-p 1 mean "off"
        sampling = {
            "temperature": float(temperature),
            "top_k": int(top_k) or None,
            "top_p": top_p if top_p < 1 else None,
        }
        started, text = time.perf_counter(), ""
        try:
            for text in stream_completion(loaded, prompt or "", int(max_new_tokens), seed=int(seed), **sampling):
                yield text, ""
        except UserError as err:
            yield "", f"⚠️ {err}"
            return
        n = len(loaded.tokenizer.encode(text))
        yield text, f"{n} tokens in {time.perf_counter() - started:.2f} s"

    vocab_size = loaded.tokenizer.vocab_size
    with gr.Blocks(title="tinygpt") as demo:
        gr.Markdown("# tinygpt\nA GPT written from scratch (course days 21-27). " + model_summary(loaded))
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="Prompt", lines=4, value="def ", max_length=MAX_PROMPT_CHARS)
                max_new = gr.Slider(1, 1000, value=200, step=1, label="Max new tokens")
                temperature = gr.Slider(0.0, 2.0, value=0.8, step=0.05, label="Temperature (0 = greedy)")
                top_k = gr.Slider(0, vocab_size, value=min(200, vocab_size), step=1, label="Top-k (0 = off)")
                top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p (1 = off)")
                seed = gr.Number(value=1337, precision=0, label="Seed")
                button = gr.Button("Generate", variant="primary")
                gr.Examples(EXAMPLE_PROMPTS, prompt, label="Prompts")
                tokens = gr.HighlightedText(
                    prompt_tokens(loaded, "def "), label="The prompt as tokens (id beside each)", show_legend=False
                )
            with gr.Column():
                output = gr.Textbox(label="Completion", lines=16)
                status = gr.Markdown()
        inputs = [prompt, max_new, temperature, top_k, top_p, seed]
        button.click(complete, inputs, [output, status], api_name="complete")
        prompt.submit(complete, inputs, [output, status])
        prompt.change(lambda text: prompt_tokens(loaded, text), prompt, tokens, api_name="tokens")
    return demo
