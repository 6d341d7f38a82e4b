"""A corrupt or cut-short index file is one line naming the file and what to do; `ask --docs` and `demo` rebuild
an index rag wrote, and leave alone one it did not."""

from __future__ import annotations

import json
import shutil

import faiss
import numpy as np
import pytest

from dlshared.outputs import MARKER
from dlshared.testing import assert_one_line_error
from rag.cli import main
from rag.store import LoadedIndex


def _write(text):
    return lambda path: path.write_text(text, encoding="utf-8")


def _edit_manifest(**changes):
    def edit(path):
        manifest = {**json.loads(path.read_text(encoding="utf-8")), **changes}
        path.write_text(json.dumps({k: v for k, v in manifest.items() if v is not None}), encoding="utf-8")

    return edit


def _cut_last_line(path):
    path.write_text("".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[:-1]), encoding="utf-8")


def _cut_bytes(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _one_vector_index(path):
    index = faiss.IndexFlatIP(384)
    index.add(np.ones((1, 384), np.float32))
    faiss.write_index(index, str(path))


CASES = [  # (file, how it breaks, what the line must say besides the file's name)
    ("manifest.json", _write('{"model": "all-MiniLM'), "missing, corrupt or cut short"),
    ("manifest.json", _write("[]"), "not a JSON object"),
    ("manifest.json", _edit_manifest(model=None), "no str 'model'"),
    ("manifest.json", _edit_manifest(chunks=10_000), "manifest.json says 10000"),
    ("chunks.jsonl", _cut_last_line, "(cut short?)"),
    ("chunks.jsonl", _cut_bytes, "is not valid JSON"),
    ("chunks.jsonl", _write('{"file": "a.md"}\n'), "line 1 is not a chunk"),
    ("index.faiss", _write("garbage"), "missing, corrupt or cut short"),
    ("index.faiss", _cut_bytes, "missing, corrupt or cut short"),
    ("index.faiss", _one_vector_index, "1 vectors of size 384"),
    ("vectors.npy", _cut_bytes, "missing, corrupt or cut short"),
    ("bm25", shutil.rmtree, "missing, corrupt or cut short"),
]


@pytest.fixture
def broken_copy(index_dir, tmp_path):
    copy = tmp_path / "idx"
    shutil.copytree(index_dir, copy)
    return copy


@pytest.mark.parametrize("name, breaks, message", CASES, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(CASES)])
def test_a_broken_index_file_is_named_in_one_line(name, breaks, message, broken_copy, capsys):
    LoadedIndex(broken_copy)  # whole, it loads
    breaks(broken_copy / name)
    err = assert_one_line_error(main, ["ask", "how do I resume?", "--index", str(broken_copy)], capsys)
    assert f"{broken_copy}/" in err and name in err and message in err and "rag index --docs DIR" in err
    err = assert_one_line_error(main, ["eval", "--index", str(broken_copy)], capsys)
    assert name in err and message in err


@pytest.fixture
def fast_models(monkeypatch, embedder):
    monkeypatch.setattr("rag.retrieve.Embedder", lambda *args, **kwargs: embedder)
    monkeypatch.setattr("rag.embed.Embedder", lambda *args, **kwargs: embedder)


def test_ask_with_docs_rebuilds_a_broken_index(broken_copy, docs_dir, fast_models, capsys):
    _cut_last_line(broken_copy / "chunks.jsonl")
    main(["ask", "How do I continue training after a crash?", "--index", str(broken_copy), "--docs", str(docs_dir)])
    out = capsys.readouterr().out
    assert "chunks.jsonl" in out and "Indexing" in out  # says what it found and what it does about it
    assert json.loads(out.strip().splitlines()[-1])["sources"][0]["file"] == "guide/training.md"
    LoadedIndex(broken_copy)  # whole again


def test_demo_rebuilds_a_broken_index_then_serves_it(broken_copy, docs_dir, fast_models, monkeypatch, capsys):
    (broken_copy / "index.faiss").write_text("garbage", encoding="utf-8")
    import rag.demo

    served, build_demo = {}, rag.demo.build_demo
    monkeypatch.setattr("dlshared.demo.launch", lambda blocks, **kwargs: served.update(kwargs))
    monkeypatch.setattr(rag.demo, "build_demo", lambda retriever, *args: build_demo(served.setdefault("r", retriever)))
    main(["demo", "--index", str(broken_copy), "--docs", str(docs_dir), "--port", "7999"])
    pending = served.pop("r")  # the page is served first; the index is rebuilt behind it
    assert served == {"host": "127.0.0.1", "port": 7999, "share": False}
    assert isinstance(pending, rag.demo.IndexInBackground) and pending.wait(120) and pending.get()
    assert LoadedIndex(broken_copy).faiss.ntotal == len(LoadedIndex(broken_copy).chunks)


def test_a_broken_folder_rag_did_not_write_is_not_rebuilt(broken_copy, docs_dir, capsys):
    (broken_copy / MARKER).unlink()  # as if a user had put these files there
    (broken_copy / "index.faiss").write_text("garbage", encoding="utf-8")
    argv = ["ask", "how?", "--index", str(broken_copy), "--docs", str(docs_dir)]
    err = assert_one_line_error(main, argv, capsys)
    assert (
        "was not written by this tool" in err and (broken_copy / "index.faiss").read_text(encoding="utf-8") == "garbage"
    )
