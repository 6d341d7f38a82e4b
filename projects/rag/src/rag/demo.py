"""The Gradio demo: a question -> the answer (streamed when a generator is set), the cited passages
(expandable), and the index's statistics.

With no index yet (a fresh clone), the page serves at once and the index is built in a background thread
(`IndexInBackground`): a question asked meanwhile gets a message saying so, and the statistics line follows the
build. Later starts reuse the index, re-embedding only the files that changed.

Everything shown comes from documents or from a model, so it is shown as text: answers are escaped Markdown and
passages escaped HTML (display.py), and no LaTeX is rendered. A question that is empty or too long, a generator
that fails or stalls: each gets a message in the page, never a traceback and never a queue that waits forever.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable

import gradio as gr

from dlshared.cli import UserError, short_reason
from dlshared.display import block_html, inline_html, markdown_text

from .answer import MAX_QUESTION_CHARS, check_question, extractive_answer

EXAMPLES = [
    "How do I fork a project?",
    "What accuracy does the classifier reach on digits?",
    "Why is TorchScript not used?",
]


class IndexInBackground:
    """A retriever still being built: `build` (the index, then the retriever over it) runs in a daemon thread, and
    `get()` returns the retriever once it is there, or raises a UserError saying what is happening meanwhile."""

    def __init__(self, build: Callable[[], object]):
        self.started = time.monotonic()
        self._retriever, self._error = None, None
        self._thread = threading.Thread(target=self._run, args=(build,), name="rag-index", daemon=True)
        self._thread.start()

    def _run(self, build) -> None:
        try:
            self._retriever = build()
        except UserError as err:
            self._error = str(err)
        except Exception as err:  # the server log gets the traceback, the page a sentence
            traceback.print_exc()
            self._error = f"indexing failed ({short_reason(err)})"

    def get(self):
        if self._retriever is not None:
            return self._retriever
        if self._error is not None:
            raise UserError(f"The index could not be built: {self._error}")
        seconds = time.monotonic() - self.started
        raise UserError(
            f"Indexing the documents (first start only; {seconds:.0f} s so far, about a minute on 2 CPU cores for"
            " this repository): ask again in a moment."
        )

    def wait(self, timeout: float | None = None) -> bool:
        """True once the build has ended, either way."""
        self._thread.join(timeout)
        return not self._thread.is_alive()


def current_retriever(retriever):
    """The retriever to use now: itself, or what an IndexInBackground has built (else its UserError)."""
    return retriever.get() if isinstance(retriever, IndexInBackground) else retriever


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
    try:
        m = current_retriever(retriever).index.manifest
    except UserError as err:
        return f"**Index** {markdown_text(str(err))}"
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
        retriever = current_retriever(retriever)  # still indexing: a UserError, shown where the answer would be
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
        stats = gr.Markdown(stats_markdown(retriever))
        if isinstance(retriever, IndexInBackground):  # follow the build, then stop polling
            ticks = gr.Timer(2.0)
            ticks.tick(lambda: _stats_until_built(retriever), outputs=[stats, ticks])
        gr.Examples(EXAMPLES, inputs=question)
        button.click(ask, [question, mode], [answer, sources], api_name="ask")
        question.submit(ask, [question, mode], [answer, sources])
    return demo


def _stats_until_built(pending: IndexInBackground):
    done = pending.wait(0)
    return stats_markdown(pending), gr.Timer(active=not done)
