"""The `rag` command end to end, the generative path on a tiny local model, and the demo over HTTP."""

from __future__ import annotations

import json
import threading
import time

import pytest

from dlshared.cli import UserError
from dlshared.testing import served_demo
from rag.answer import answer_question
from rag.cli import main
from rag.retrieve import Retriever


def test_index_then_ask_on_a_folder_it_never_saw(tmp_path, make_docs, capsys):
    docs = make_docs(tmp_path / "docs")
    main(["index", "--docs", str(docs), "--out", str(tmp_path / "idx")])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["files"] == 4
    main(["ask", "How do I continue training after a crash?", "--index", str(tmp_path / "idx"), "--k", "3"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["sources"][0]["file"] == "guide/training.md"
    assert "--resume" in result["answer"] and "[1]" in result["answer"]
    assert set(result["latency_ms"]) == {"retrieval", "answer"}
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "zebra coat", "source": "notes/zebra.md"}) + "\n", encoding="utf-8")
    main(["eval", "--index", str(tmp_path / "idx"), "--questions", str(questions)])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["recall@1"] == 1.0


def test_bench_prints_one_json_line_with_a_row_per_index(tmp_path, capsys):
    profile = ["--profile-out", str(tmp_path / "profile")]  # and a query's path under torch.profiler
    main(["bench", "--sizes", "2000", "--queries", "20", "--index-types", "flat", "hnsw", *profile])
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert [(row["vectors"], row["index"]) for row in result["rows"]] == [(2000, "flat"), (2000, "hnsw")]
    assert result["rows"][0]["recall@10"] == 1.0  # exact search is its own ground truth
    assert len(lines) == 3 and not lines[0].startswith("{")  # a progress line per index, for people
    table = (tmp_path / "profile" / "top_ops.txt").read_text(encoding="utf-8")
    assert "embed" in table and "faiss search" in table and "aten::addmm" in table  # MiniLM's linear layers
    assert result["profile"]["vectors"] == 2000 and result["profile"]["profiled_steps"] == 3


@pytest.mark.parametrize(
    "argv, message",
    [
        (["ask", "   ", "--index", "{idx}"], "the question is empty"),
        (["ask", "hello", "--index", "{tmp}/none"], "no index there"),
        (["index", "--docs", "{tmp}/missing"], "no such folder"),
        (["eval", "--index", "{idx}", "--questions", "{tmp}/none.jsonl"], "no such file"),
        (["eval", "--index", "{idx}", "--pictures", "{idx}/manifest.json"], "a file, not a folder"),
    ],
)
def test_user_errors_are_one_line(argv, message, index_dir, tmp_path, capsys):
    argv = [a.format(idx=index_dir, tmp=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and message in err and len(err.splitlines()) == 1


@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory):
    """A randomly initialised 2-layer Llama with a word-level tokenizer: the real loading and streaming code,
    without a download. Its words are nonsense; what is tested is the plumbing."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("generator")
    words = ["<unk>", "<eos>", "the", "a", "model", "run", "train", "resume", "answer", "[1]", "[2]", "."]
    vocab = {word: i for i, word in enumerate(words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<eos>")
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=1,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    from rag.answer import Generator

    return Generator(str(folder))


def test_generative_answers_stream(index_dir, embedder, tiny_generator):
    retriever = Retriever(index_dir, embedder)
    hits = retriever.search("resume training", 2)
    partial = list(tiny_generator.stream("how do I resume?", hits, max_new_tokens=6))
    assert partial and all(later.startswith(earlier) for earlier, later in zip(partial, partial[1:], strict=False))
    result = answer_question(retriever, "how do I resume?", 2, "hybrid", tiny_generator, max_new_tokens=6)
    assert result["answer"] == partial[-1] and result["sources"][0]["file"] == "guide/training.md"


def test_demo_answers_through_gradio_client(index_dir, embedder):

    from rag.demo import build_demo

    demo = build_demo(Retriever(index_dir, embedder))
    with served_demo(demo) as client:
        answer, sources = client.predict("How do zebras differ from one another?", "hybrid", api_name="/ask")
        assert "unique" in answer and "notes/zebra.md" in sources and "<details>" in sources
        answer, sources = client.predict("   ", "hybrid", api_name="/ask")
        assert "Type a question first" in answer and sources == ""


def _boom(**kwargs):
    raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")


def _stall(**kwargs):
    time.sleep(3)  # a generate() that neither writes nor ends (a daemon thread: it does not outlive the session)


def test_a_generator_that_fails_or_stalls_ends_the_stream(index_dir, embedder, tiny_generator, monkeypatch):
    hits = Retriever(index_dir, embedder).search("resume training", 2)
    monkeypatch.setattr(tiny_generator.model, "generate", _boom)
    with pytest.raises(UserError, match="the generator failed: CUDA out of memory. Tried to allocate 2 GiB$"):
        list(tiny_generator.stream("how do I resume?", hits))
    monkeypatch.setattr(tiny_generator.model, "generate", _stall)
    monkeypatch.setattr(tiny_generator, "timeout", 0.3)
    started = time.monotonic()
    with pytest.raises(UserError, match="wrote nothing for 0.3 s"):
        list(tiny_generator.stream("how do I resume?", hits))
    assert time.monotonic() - started < 2


def test_a_reader_that_stops_stops_the_generator_thread(index_dir, embedder, tiny_generator, monkeypatch):
    import torch

    stopped = threading.Event()

    def endless(streamer, stopping_criteria, **kwargs):  # writes until told to stop, as generate() does
        ids = torch.zeros((1, 1), dtype=torch.long)
        while not stopping_criteria(ids, None).all():
            streamer.on_finalized_text("word ")
            time.sleep(0.01)
        stopped.set()

    monkeypatch.setattr(tiny_generator.model, "generate", endless)
    stream = tiny_generator.stream("how do I resume?", Retriever(index_dir, embedder).search("resume", 1))
    assert next(stream) == "word "
    stream.close()  # the page was closed
    assert stopped.wait(2)


def test_the_demo_reports_a_failed_generator_and_keeps_serving(index_dir, embedder, tiny_generator, monkeypatch):

    from rag.demo import build_demo

    monkeypatch.setattr(tiny_generator, "timeout", 0.3)
    demo = build_demo(Retriever(index_dir, embedder), tiny_generator)
    with served_demo(demo) as client:
        for generate, message in [(_boom, "the generator failed"), (_stall, "wrote nothing for 0\\.3 s")]:
            monkeypatch.setattr(tiny_generator.model, "generate", generate)
            answer, sources = client.predict("How do I resume training?", "hybrid", api_name="/ask")
            assert answer.startswith("⚠️") and message in answer and "guide/training.md" in sources
        answer, _ = client.predict("why? " * 300, "hybrid", api_name="/ask")
        assert "at most 1000" in answer


def test_with_no_index_the_demo_serves_at_once_and_answers_once_built(index_dir, embedder):
    """A fresh clone has no index: the page must not wait for it. Questions asked during the build get a message;
    once built, answers."""

    from rag.demo import IndexInBackground, build_demo

    release = threading.Event()

    def slow_build():
        release.wait(30)  # the build, held until the first question has been asked
        return Retriever(index_dir, embedder)

    pending = IndexInBackground(slow_build)
    demo = build_demo(pending)
    with served_demo(demo) as client:
        answer, sources = client.predict("How do zebras differ from one another?", "hybrid", api_name="/ask")
        assert answer.startswith("⚠️") and "Indexing the documents" in answer and sources == ""
        release.set()
        assert pending.wait(30)
        answer, sources = client.predict("How do zebras differ from one another?", "hybrid", api_name="/ask")
        assert "unique" in answer and "notes/zebra.md" in sources


def test_a_failed_background_build_is_a_message_in_the_page():
    from rag.demo import IndexInBackground, respond, stats_markdown

    def broken_build():
        raise UserError("--docs /nowhere: no such folder")

    pending = IndexInBackground(broken_build)
    assert pending.wait(10)
    ((answer, sources),) = list(respond(pending, None, 3, "anything?", "hybrid"))
    assert answer.startswith("⚠️ The index could not be built") and "no such folder" in answer and sources == ""
    assert "could not be built" in stats_markdown(pending)


def test_the_demo_command_builds_a_missing_index_behind_the_page(tmp_path, make_docs, monkeypatch):
    import dlshared.demo
    import rag.demo

    served = {}
    monkeypatch.setattr(rag.demo, "build_demo", lambda retriever, generator, k: served.setdefault("r", retriever))
    monkeypatch.setattr(dlshared.demo, "launch", lambda demo, **kwargs: served.setdefault("launched", True))
    docs = make_docs(tmp_path / "docs")
    main(["demo", "--index", str(tmp_path / "idx"), "--docs", str(docs)])
    assert served["launched"] and isinstance(served["r"], rag.demo.IndexInBackground)
    assert served["r"].wait(120)
    assert served["r"].get().index.manifest["files"].keys() == {
        "guide/training.md",
        "guide/export.md",
        "notes/cooking.txt",
        "notes/zebra.md",
    }
