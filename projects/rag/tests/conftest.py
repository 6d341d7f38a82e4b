"""Fixtures: the bundled embedding model loaded once, a small document folder and its index."""

from __future__ import annotations

from pathlib import Path

import pytest

DOCS = {
    "guide/training.md": "# Training\n\nRun `tool train` to fit the model. Checkpoints are written every epoch.\n\n"
    "## Resuming\n\nAfter a crash, pass `--resume` and training continues from the last saved epoch with the "
    "same optimizer state.\n\n## Learning rate\n\nThe one-cycle schedule warms up, then anneals the learning "
    "rate to zero.\n",
    "guide/export.md": "# Export\n\nThe exporter writes an ONNX file with a dynamic batch dimension.\n\n"
    "## Quantisation\n\nStatic int8 quantisation uses calibration batches and makes the file four times smaller.\n",
    "notes/cooking.txt": "Bread needs flour, water, salt and yeast. Knead the dough for ten minutes, let it rise "
    "for an hour, then bake it at 230 degrees until the crust is brown.\n",
    "notes/zebra.md": "# Zebras\n\nZebras are African equines with black-and-white striped coats. Each zebra's "
    "stripe pattern is unique, like a fingerprint.\n",
}


def write_docs(root: Path, docs: dict[str, str] = DOCS) -> Path:
    for name, text in docs.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def embedder():
    from rag.embed import Embedder

    return Embedder()


@pytest.fixture(scope="session")
def docs_dir(tmp_path_factory) -> Path:
    return write_docs(tmp_path_factory.mktemp("docs"))


@pytest.fixture(scope="session")
def index_dir(docs_dir, embedder, tmp_path_factory) -> Path:
    from rag.config import IndexConfig
    from rag.indexer import build_index

    out = tmp_path_factory.mktemp("index") / "idx"
    build_index(IndexConfig(docs=docs_dir, out=out, chunk_tokens=40, overlap_tokens=8), embedder)
    return out


@pytest.fixture
def make_docs():
    return write_docs
