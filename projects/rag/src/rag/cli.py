"""The `rag` command: index, ask, eval, bench, demo (see `rag <verb> --help`)."""

from __future__ import annotations

from pathlib import Path

from dlshared.cli import Command, UserError, run_cli

from .config import AskArgs, BenchArgs, DemoArgs, EvalArgs, IndexConfig


def open_retriever(index: Path, rerank: str | None = None):
    from .retrieve import Retriever

    try:
        return Retriever(index, rerank=rerank)
    except FileNotFoundError:
        message = f"--index {index}: no index there; build one with `rag index --docs DIR --out {index}`"
        raise UserError(message) from None


def ask_command(args: AskArgs) -> dict:
    """The answer and its sources for people; the returned dict is printed as the last line, JSON."""
    from .answer import Generator, answer_question

    if not args.question.strip():  # before loading any model
        raise UserError("the question is empty")
    retriever = open_retriever(args.index, args.rerank)
    generator = Generator(args.generator) if args.generator else None
    result = answer_question(retriever, args.question, args.k, args.mode, generator, args.max_new_tokens)
    print(f"\n{result['answer']}\n")
    for source in result["sources"]:
        first, last = source["lines"]
        print(f"[{source['n']}] {source['file']}:{first}-{last}  {source['heading']}")
    return result


def eval_command(args: EvalArgs) -> dict:
    from .evaluate import BUNDLED_QUESTIONS, evaluate, load_questions

    questions = load_questions(args.questions or BUNDLED_QUESTIONS)  # a bad file fails before the model loads
    return evaluate(open_retriever(args.index), questions, args.mode)


def demo_command(args: DemoArgs) -> None:
    from dlshared.demo import launch

    from .answer import Generator
    from .demo import build_demo
    from .indexer import build_index

    if not (args.index / "manifest.json").is_file():
        print(f"No index at {args.index}: indexing this repository's Markdown first.")
        built = build_index(IndexConfig(out=args.index))
        print(f"indexed {built['files']} files, {built['chunks']} chunks in {built['seconds']} s", flush=True)
    generator = Generator(args.generator) if args.generator else None
    launch(build_demo(open_retriever(args.index), generator), host=args.host, port=args.port)


COMMANDS = {
    "index": Command(
        "rag.indexer:build_index", IndexConfig, "Chunk, embed and index a folder of Markdown/text/PDF files."
    ),
    "ask": Command(ask_command, AskArgs, "Answer a question from an index, with cited passages (last line JSON)."),
    "eval": Command(eval_command, EvalArgs, "recall@1/5/10, MRR and latency on a JSONL question set."),
    "bench": Command("rag.bench:bench", BenchArgs, "Build time, memory and query latency of each index type at scale."),
    "demo": Command(demo_command, DemoArgs, "Serve the Gradio demo (indexes this repository first if needed)."),
}


def main(argv: list[str] | None = None) -> None:
    run_cli("rag", COMMANDS, argv)


if __name__ == "__main__":
    main()
