"""The `rag` command: index, ask, eval, bench, demo (see `rag <verb> --help`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from dlshared.cli import Command, UserError, run_cli

from .config import AskArgs, BenchArgs, DemoArgs, EvalArgs, IndexConfig


def open_retriever(index: Path, rerank: str | None = None):
    from .retrieve import Retriever

    try:
        return Retriever(index, rerank=rerank)
    except FileNotFoundError:
        raise UserError(
            f"--index {index}: no index there; build one with `rag index --docs DIR --out {index}`"
        ) from None


def index_command(cfg: IndexConfig) -> dict:
    from .indexer import build_index

    result = build_index(cfg)
    print(json.dumps(result))
    return result


def answer_question(
    retriever, question: str, k: int, mode: str, generator=None, max_new_tokens: int = 200
) -> dict:
    """Retrieve, then answer; the result is what `ask` prints and the demo shows."""
    from .answer import extractive_answer

    if not question.strip():
        raise UserError("the question is empty")
    hits, retrieval_ms = retriever.timed_search(question, k, mode)
    started = time.perf_counter()
    if generator is not None:
        answer = ""
        for partial in generator.stream(question, hits, max_new_tokens):
            answer = partial  # the stream yields the growing text; keep the last, complete one
    else:
        answer = extractive_answer(question, hits, retriever.embedder)
    return {
        "question": question, "answer": answer,
        "sources": [{"n": n, "file": h.chunk["file"], "lines": [h.chunk["line_start"], h.chunk["line_end"]],
                     "heading": h.chunk["heading"], "score": round(h.score, 5), "ranks": h.sources}
                    for n, h in enumerate(hits, start=1)],
        "latency_ms": {"retrieval": round(retrieval_ms, 2), "answer": round((time.perf_counter() - started) * 1000, 2)},
    }  # fmt: skip


def ask_command(args: AskArgs) -> dict:
    from .answer import Generator

    if not args.question.strip():
        raise UserError("the question is empty")
    retriever = open_retriever(args.index, args.rerank)
    generator = Generator(args.generator) if args.generator else None
    result = answer_question(retriever, args.question, args.k, args.mode, generator, args.max_new_tokens)
    print(f"\n{result['answer']}\n")
    for source in result["sources"]:
        print(
            f"[{source['n']}] {source['file']}:{source['lines'][0]}-{source['lines'][1]}  {source['heading']}"
        )
    print(json.dumps(result))
    return result


def eval_command(args: EvalArgs) -> dict:
    from .evaluate import BUNDLED_QUESTIONS, evaluate, load_questions

    questions = load_questions(args.questions or BUNDLED_QUESTIONS)  # a bad file fails before the model loads
    metrics = evaluate(open_retriever(args.index), questions, args.mode)
    print(json.dumps(metrics))
    return metrics


def bench_command(args: BenchArgs) -> list:
    from .bench import bench

    rows = bench(args)
    print(json.dumps(rows))
    return rows


def demo_command(args: DemoArgs) -> None:
    from dlshared.demo import launch

    from .answer import Generator
    from .demo import build_demo
    from .indexer import build_index

    if not (args.index / "manifest.json").is_file():
        print(f"No index at {args.index}: indexing this repository's Markdown first.")
        print(json.dumps(build_index(IndexConfig(out=args.index))))
    generator = Generator(args.generator) if args.generator else None
    launch(build_demo(open_retriever(args.index), generator), host=args.host, port=args.port)


COMMANDS = {
    "index": Command(
        index_command, IndexConfig, "Chunk, embed and index a folder of Markdown/text/PDF files."
    ),
    "ask": Command(
        ask_command, AskArgs, "Answer a question from an index, with cited passages (last line JSON)."
    ),
    "eval": Command(eval_command, EvalArgs, "recall@1/5/10, MRR and latency on a JSONL question set."),
    "bench": Command(
        bench_command, BenchArgs, "Build time, memory and query latency of each index type at scale."
    ),
    "demo": Command(
        demo_command, DemoArgs, "Serve the Gradio demo (indexes this repository first if needed)."
    ),
}


def main(argv: list[str] | None = None) -> None:
    run_cli("rag", COMMANDS, argv)


if __name__ == "__main__":
    main()
