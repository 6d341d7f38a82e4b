"""The `rag` command: index, ask, eval, bench, demo (see `rag <verb> --help`)."""

from __future__ import annotations

from pathlib import Path

from dlshared.cli import Command, UserError, run_cli

from .config import AskArgs, BenchArgs, DemoArgs, EvalArgs, IndexConfig


def open_retriever(index: Path, rerank: str | None = None, docs: Path | None = None, build: bool = False):
    """The retriever over `index`. A missing or unreadable index is one line naming the file and what to do; with
    `build`, it is (re)built from `docs` (unset: this repository's Markdown) first. Only a folder rag wrote is
    replaced: staged_output refuses any other."""
    from .embed import Embedder
    from .indexer import build_index
    from .retrieve import Retriever
    from .store import IndexProblem, previous_manifest

    try:
        return Retriever(index, rerank=rerank)  # checks every file of the index before any model loads
    except IndexProblem as problem:
        if not build:
            raise
        found = problem if (Path(index) / "manifest.json").exists() else f"No index at {index}."
        print(f"{found}\nIndexing {docs or 'this repository’s Markdown'} into it now.", flush=True)
    manifest = previous_manifest(index)  # a rebuild keeps the index's store (faiss, Milvus Lite, a server)
    store = {"store": "milvus", "uri": manifest.get("milvus_uri")} if manifest.get("store") == "milvus" else {}
    cfg = IndexConfig(docs=docs, out=index, overwrite=True, **store)
    embedder = Embedder(cfg.model)
    built = build_index(cfg, embedder)
    print(f"indexed {built['files']} files, {built['chunks']} chunks in {built['seconds']} s", flush=True)
    return Retriever(index, embedder, rerank=rerank)


def ask_command(args: AskArgs) -> dict:
    """The answer and its sources for people; the returned dict is printed as the last line, JSON."""
    from dlshared.display import terminal_text

    from .answer import Generator, answer_question, check_question

    check_question(args.question)  # before loading any model
    retriever = open_retriever(args.index, args.rerank, args.docs, build=args.docs is not None)
    generator = Generator(args.generator) if args.generator else None
    result = answer_question(retriever, args.question, args.k, args.mode, generator, args.max_new_tokens)
    print(f"\n{terminal_text(result['answer'])}\n")  # passages are the documents' text: no escapes reach the terminal
    for source in result["sources"]:
        first, last = source["lines"]
        print(f"[{source['n']}] {terminal_text(source['file'])}:{first}-{last}  {terminal_text(source['heading'])}")
    return result


def eval_command(args: EvalArgs) -> dict:
    """The metrics, and with --pictures the passages behind them drawn (after the timed searches, not among them)."""
    from dlshared.pictures import save_figures

    from .evaluate import BUNDLED_QUESTIONS, evaluate, load_questions
    from .pictures import retrieval_figure

    questions = load_questions(args.questions or BUNDLED_QUESTIONS)  # a bad file fails before the model loads
    if args.pictures is not None and args.pictures.exists() and not args.pictures.is_dir():
        raise UserError(f"--pictures {args.pictures}: a file, not a folder")
    retriever = open_retriever(args.index)
    metrics = evaluate(retriever, questions, args.mode)
    pictures = {}
    if args.pictures is not None:  # only when asked: the index folder holds data, not results
        pictures = save_figures(args.pictures, {"retrieval": retrieval_figure(retriever, questions, mode=args.mode)})
    return {**metrics, "pictures": pictures}


def demo_command(args: DemoArgs) -> None:
    from dlshared.demo import launch

    from .answer import Generator
    from .demo import IndexInBackground, build_demo
    from .retrieve import Retriever
    from .store import IndexProblem

    try:
        retriever = Retriever(args.index)
    except IndexProblem:  # none yet, or unreadable: serve the page now, build the index behind it
        retriever = IndexInBackground(lambda: open_retriever(args.index, docs=args.docs, build=True))
    generator = Generator(args.generator) if args.generator else None
    launch(build_demo(retriever, generator, args.k), host=args.host, port=args.port, share=args.share)


COMMANDS = {
    "index": Command(
        "rag.indexer:build_index", IndexConfig, "Chunk, embed and index a folder of Markdown/text/PDF files."
    ),
    "ask": Command(ask_command, AskArgs, "Answer a question from an index, with cited passages (last line JSON)."),
    "eval": Command(eval_command, EvalArgs, "recall@1/5/10, MRR and latency on a JSONL question set."),
    "bench": Command(
        "rag.bench:bench",
        BenchArgs,
        "Build time, memory and query latency of each index type at scale (--profile: a query's trace).",
    ),
    "demo": Command(
        demo_command,
        DemoArgs,
        "Serve the Gradio demo (at once; with no index yet, this repository is indexed behind it).",
    ),
}


def main(argv: list[str] | None = None) -> None:
    run_cli("rag", COMMANDS, argv)


if __name__ == "__main__":
    main()
