"""The Gradio demo: a question -> the answer (streamed when a generator is set), the cited passages
(expandable), and the index's statistics.

Everything shown comes from documents or from a model, so it is shown as text: answers are escaped Markdown and
passages escaped HTML (display.py), and no LaTeX is rendered. A question that is empty or too long, a generator
that fails or stalls: each gets a message in the page, never a traceback and never a queue that waits forever.
"""

from __future__ import annotations

import traceback

import gradio as gr

from dlshared.cli import UserError
from dlshared.display import block_html, inline_html, markdown_text

from .answer import MAX_QUESTION_CHARS, check_question, extractive_answer

EXAMPLES = [
    "How do I fork a project?",
    "What accuracy does the classifier reach on digits?",
    "Why is TorchScript not used?",
]


def passages_markdown(hits) -> str:
    blocks = []
    for n, hit in enumerate(hits, start=1):
        c = hit.chunk
        body = block_html(c["text"].strip())
        blocks.append(
            f"<details><summary>[{n}] <code>{inline_html(c['file'])}</code> lines {int(c['line_start'])}-"
            f"{int(c['line_end'])} · {inline_html(c['heading'])} · score {hit.score:.4f}</summary>\n\n"
            f"<pre>{body}</pre>\n</details>"
        )
    return "\n".join(blocks)


def stats_markdown(retriever) -> str:
    m = retriever.index.manifest
    return (
        f"**Index** {inline_html(m['index_type'])} · {m['chunks']:,} chunks from {len(m['files'])} files · "
        f"model <code>{inline_html(m['model'])}</code> ({m['dim']}-d) · chunks of {m['chunk_tokens']} tokens, "
        f"overlap {m.get('overlap_tokens', '?')} · built {inline_html(str(m.get('built', '?')))}"
    )


def respond(retriever, generator, k: int, question: str, mode: str):
    """Yield (answer Markdown, passages Markdown) pairs: one, or one per generated token."""
    if not question or not question.strip():
        yield "⚠️ Type a question first.", ""
        return
    sources = ""
    try:
        question = check_question(question)  # the length cap: the textbox's own limit is only a browser's
        hits, ms = retriever.timed_search(question, k, mode)
        sources = passages_markdown(hits) + f"\n\n*retrieval {ms:.1f} ms*"
        if generator is None:
            yield markdown_text(extractive_answer(question, hits, retriever.embedder)), sources
            return
        for text in generator.stream(question, hits):
            yield markdown_text(text), sources
    except UserError as err:  # too long, or the generator failed or stalled: say so where the answer would be
        yield f"⚠️ {markdown_text(str(err))}", sources
    except Exception:  # anything else: the server log gets the traceback, the page a sentence
        traceback.print_exc()
        yield "⚠️ Answering failed; the server log has the details.", sources


def build_demo(retriever, generator=None, k: int = 5) -> gr.Blocks:
    def ask(question: str, mode: str):
        yield from respond(retriever, generator, k, question, mode)

    with gr.Blocks(title="rag") as demo:
        gr.Markdown("# Ask the documents\nAnswers cite the passages they come from; open a passage to read it.")
        with gr.Row():
            question = gr.Textbox(
                label="Question",
                placeholder="How do I resume a training run?",
                max_length=MAX_QUESTION_CHARS,
                scale=4,
            )
            mode = gr.Radio(["hybrid", "dense", "bm25"], value="hybrid", label="Retrieval", scale=1)
        button = gr.Button("Ask", variant="primary")
        answer = gr.Markdown(label="Answer", latex_delimiters=[])
        sources = gr.Markdown(label="Passages", latex_delimiters=[])
        gr.Markdown(stats_markdown(retriever))
        gr.Examples(EXAMPLES, inputs=question)
        button.click(ask, [question, mode], [answer, sources], api_name="ask")
        question.submit(ask, [question, mode], [answer, sources])
    return demo
