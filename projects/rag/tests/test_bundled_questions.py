"""The README's quality claim, checked: the bundled question set over this repository's Markdown."""

from __future__ import annotations

import pytest

from rag.config import IndexConfig
from rag.evaluate import BUNDLED_QUESTIONS, evaluate, load_questions
from rag.indexer import build_index, default_docs
from rag.retrieve import Retriever


def _repository_root():
    root = default_docs()
    if not (root / "projects").is_dir():
        pytest.skip("the bundled questions are about the full repository, not a fork")
    return root


def test_bundled_questions_point_at_files_of_the_default_corpus():
    root = _repository_root()
    for row in load_questions(BUNDLED_QUESTIONS):
        assert (root / row["source"]).is_file(), row


@pytest.mark.slow
def test_recall_at_5_on_the_bundled_questions(tmp_path, embedder):
    _repository_root()
    build_index(IndexConfig(out=tmp_path / "idx"), embedder)
    metrics = evaluate(Retriever(tmp_path / "idx", embedder), load_questions(BUNDLED_QUESTIONS))
    assert metrics["recall@5"] >= 0.9, metrics["misses_at_5"]
