"""The Gradio demo: a question -> the answer (streamed when a generator is set), the cited passages
(expandable), and the index's statistics. An empty question gets a message, not an error."""

from __future__ import annotations

import html

import gradio as gr

from .answer import extractive_answer

EXAMPLES = [
    "How do I fork a project?",
    "What accuracy does the classifier reach on digits?",
    "Why is TorchScript not used?",
]


def passages_markdown(hits) -> str:
    blocks = []
    for n, hit in enumerate(hits, start=1):
        c = hit.chunk
        body = html.escape(c["text"].strip())
        blocks.append(
            f"<details><summary>[{n}] <code>{c['file']}</code> lines {c['line_start']}-{c['line_end']}"
            f" · {html.escape(c['heading'])} · score {hit.score:.4f}</summary>\n\n<pre>{body}</pre>\n</details>"
        )
    return "\n".join(blocks)


def stats_markdown(retriever) -> str:
    m = retriever.index.manifest
    return (
        f"**Index** {m['index_type']} · {m['chunks']:,} chunks from {len(m['files'])} files · "
        f"model `{m['model']}` ({m['dim']}-d) · chunks of {m['chunk_tokens']} tokens, overlap "
        f"{m['overlap_tokens']} · built {m['built']}"
    )


def build_demo(retriever, generator=None, k: int = 5) -> gr.Blocks:
    def respond(question: str, mode: str):
        if not question or not question.strip():
            yield "⚠️ Type a question first.", ""
            return
        hits, ms = retriever.timed_search(question.strip(), k, mode)
        sources = passages_markdown(hits) + f"\n\n*retrieval {ms:.1f} ms*"
        if generator is None:
            yield extractive_answer(question, hits, retriever.embedder), sources
            return
        for text in generator.stream(question, hits):
            yield text, sources

    with gr.Blocks(title="rag") as demo:
        gr.Markdown("# Ask the documents\nAnswers cite the passages they come from; open a passage to read it.")
        with gr.Row():
            question = gr.Textbox(label="Question", placeholder="How do I resume a training run?", scale=4)
            mode = gr.Radio(["hybrid", "dense", "bm25"], value="hybrid", label="Retrieval", scale=1)
        ask = gr.Button("Ask", variant="primary")
        answer = gr.Markdown(label="Answer")
        sources = gr.Markdown(label="Passages")
        gr.Markdown(stats_markdown(retriever))
        gr.Examples(EXAMPLES, inputs=question)
        ask.click(respond, [question, mode], [answer, sources], api_name="ask")
        question.submit(respond, [question, mode], [answer, sources])
    return demo
