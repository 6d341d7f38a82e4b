"""The README's quality claim, checked: the bundled question set over this repository's Markdown.

The README's figures index all of it (`uv run rag eval`); this test indexes a corpus that does not grow with every
lesson written: the files the questions are about plus every README as distractors (the course's lessons are most
of the repository's text, and embedding them all costs minutes on a CPU)."""

from __future__ import annotations

import shutil

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
    root = _repository_root()
    questions = load_questions(BUNDLED_QUESTIONS)
    readmes = [root / "README.md", root / "course" / "README.md", *root.glob("projects/*/README.md")]
    files = {row["source"] for row in questions} | {str(p.relative_to(root)) for p in readmes}
    for name in files:  # same relative paths, so each question's source names a file of this corpus
        (tmp_path / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / name, tmp_path / "docs" / name)
    assert len(files) >= 20  # the 14 sources and 10 READMEs: a search among distractors, not a lookup
    build_index(IndexConfig(docs=tmp_path / "docs", out=tmp_path / "idx"), embedder)
    metrics = evaluate(Retriever(tmp_path / "idx", embedder), load_questions(BUNDLED_QUESTIONS))
    assert metrics["recall@5"] >= 0.9, metrics["misses_at_5"]
