"""Index build, save/load, incremental re-indexing, hybrid retrieval, HNSW recall, evaluation and bad inputs."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dlshared.cli import UserError
from rag.bench import synthetic_vectors
from rag.config import IndexConfig
from rag.evaluate import evaluate, load_questions
from rag.indexer import build_index
from rag.retrieve import Retriever, reciprocal_rank_fusion
from rag.store import build_faiss


def test_the_bundled_model_loads_offline(embedder):
    vectors = embedder.encode(["How do I resume training?", "continue a stopped run", "zebra stripes"])
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]  # paraphrase beats an unrelated sentence


def test_retrieval_finds_the_right_file_in_each_mode(index_dir, embedder):
    retriever = Retriever(index_dir, embedder)
    for mode in ("hybrid", "dense", "bm25"):
        assert retriever.search("how do I continue after a crash", 3, mode)[0].chunk["file"] == "guide/training.md"
        assert retriever.search("zebra stripe pattern", 1, mode)[0].chunk["file"] == "notes/zebra.md"
    hits = retriever.search("int8 calibration", 2)
    assert hits[0].chunk["heading"].endswith("Quantisation") and set(hits[0].sources) == {"dense", "bm25"}


def test_a_saved_index_loads_and_answers_identically(index_dir, embedder):
    first, second = Retriever(index_dir, embedder), Retriever(index_dir, embedder)
    for question in ("learning rate schedule", "bread", "ONNX batch"):
        a, b = first.search(question, 4), second.search(question, 4)
        assert [(h.chunk, h.score) for h in a] == [(h.chunk, h.score) for h in b]


def test_reindexing_embeds_only_changed_files(docs_dir, embedder, tmp_path, make_docs):
    docs = make_docs(tmp_path / "docs")
    out = tmp_path / "idx"
    cfg = IndexConfig(docs=docs, out=out, chunk_tokens=40, overlap_tokens=8)
    first = build_index(cfg, embedder)
    assert first["files_embedded"] == 4 and first["files_reused"] == 0
    (docs / "notes" / "zebra.md").write_text("# Zebras\n\nZebras sleep standing up.\n", encoding="utf-8")
    (docs / "notes" / "cooking.txt").unlink()
    second = build_index(dataclasses.replace(cfg, overwrite=True), embedder)  # replacing its own index: asked
    assert (second["files"], second["files_embedded"], second["files_reused"]) == (3, 1, 2)
    retriever = Retriever(out, embedder)
    assert "standing up" in retriever.search("how do zebras sleep", 1)[0].chunk["text"]
    assert all(c["file"] != "notes/cooking.txt" for c in retriever.index.chunks)
    fresh = build_index(IndexConfig(docs=docs, out=tmp_path / "fresh", chunk_tokens=40, overlap_tokens=8), embedder)
    assert fresh["chunks"] == second["chunks"]
    np.testing.assert_allclose(
        Retriever(tmp_path / "fresh", embedder).index.vectors(), retriever.index.vectors(), atol=1e-5
    )


def test_a_folder_with_a_binary_file_indexes_the_rest(tmp_path, embedder, make_docs, capsys):
    docs = make_docs(tmp_path / "docs")
    (docs / "broken.md").write_bytes(b"\x00\xff\x00 not text")
    result = build_index(IndexConfig(docs=docs, out=tmp_path / "idx"), embedder)
    assert result["files"] == 4 and result["files_skipped"] == 1
    assert result["skipped"] == ["broken.md: looks binary (NUL bytes)"]
    assert "skipped broken.md" in capsys.readouterr().out


def test_empty_or_missing_folders_are_user_errors(tmp_path, embedder):
    (tmp_path / "empty").mkdir()
    for docs in (tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(UserError):
            build_index(IndexConfig(docs=docs, out=tmp_path / "idx"), embedder)


def test_reciprocal_rank_fusion():
    fused = reciprocal_rank_fusion({"dense": [3, 1, 2], "bm25": [1, 4]}, k=60)
    assert [i for i, _, _ in fused] == [1, 3, 4, 2]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61) and fused[0][2] == {"dense": 2, "bm25": 1}


def test_hnsw_recall_at_10_against_exact_search():
    rng = np.random.default_rng(0)
    vectors = synthetic_vectors(20_000, 64, rng, centres=256)
    queries = vectors[rng.integers(0, len(vectors), 200)] + 0.05 * rng.standard_normal((200, 64), dtype=np.float32)
    _, truth = build_faiss(vectors, "flat").search(queries, 10)
    _, found = build_faiss(vectors, "hnsw").search(queries, 10)
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.95, recall


def test_eval_on_a_question_file(index_dir, embedder, tmp_path):
    questions = tmp_path / "q.jsonl"
    rows = [
        {"question": "What do I pass to continue training after a crash?", "source": "guide/training.md"},
        {"question": "How much smaller does int8 make the model?", "source": "guide/export.md"},
        {"question": "How long should dough rise?", "source": "notes/cooking.txt"},
    ]
    questions.write_text("\n".join(json.dumps(row) for row in rows), encoding="utf-8")
    metrics = evaluate(Retriever(index_dir, embedder), load_questions(questions))
    assert metrics["recall@1"] == metrics["recall@5"] == metrics["mrr"] == 1.0
    assert metrics["questions"] == 3 and metrics["latency_ms_p95"] > 0


def test_a_malformed_question_line_names_its_line(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "ok?", "source": "a.md"}\n{"question": "missing source"}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"q.jsonl:2"):
        load_questions(path)
    path.write_text('{"question": "ok?", "source": "a.md"}\nnot json\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"q.jsonl:2: not valid JSON"):
        load_questions(path)


ASCII_LOCALE = {"LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
"""Python's text files default to ASCII here (UTF-8 mode off, the C locale not coerced): like a Windows cp1252
machine, any file opened without encoding="utf-8" breaks on the first non-ASCII character."""


def test_non_ascii_markdown_round_trips_under_a_non_utf8_locale(tmp_path):
    text = "# Noise — a résumé\n\nThe loss fell 3× (± 0.1) and ∇L ≈ 0 → converged; naïve café in Zürich.\n"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "lesson.md").write_text(text, encoding="utf-8")
    script = (
        "import json, locale, sys\nfrom pathlib import Path\nfrom rag.config import IndexConfig\n"
        "from rag.indexer import build_index\nfrom rag.store import LoadedIndex\n"
        "assert 'utf' not in locale.getpreferredencoding(False).lower(), locale.getpreferredencoding(False)\n"
        "out = Path(sys.argv[1]) / 'idx'\n"
        "build_index(IndexConfig(docs=Path(sys.argv[1]) / 'docs', out=out))\n"
        "print(json.dumps([c['text'] for c in LoadedIndex(out).chunks]))\n"  # ASCII escapes: any pipe encoding
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))} | ASCII_LOCALE
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    chunks = json.loads(done.stdout.strip().splitlines()[-1])
    assert "3× (± 0.1) and ∇L ≈ 0 → converged; naïve café in Zürich." in " ".join(chunks)
