"""`rag index`: documents -> chunks -> embeddings -> index folder, embedding only files that changed."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

from dlshared.cli import UserError

from .config import IndexConfig
from .embed import Embedder
from .ingest import chunk_document, embedding_text, file_digest, find_documents, read_document
from .store import LoadedIndex, choose_index_type, save_index


def default_docs() -> Path:
    """This repository's Markdown: the workspace root above the installed package (READMEs, course lessons)."""
    here = Path(__file__).resolve()
    for folder in here.parents:
        if (folder / "pyproject.toml").is_file() and (folder / "projects").is_dir():
            return folder
    return here.parents[2]  # a fork: the project's own folder (README and docs)


def _previous(out: Path, cfg: IndexConfig) -> tuple[dict[str, list[dict]], dict[str, np.ndarray], dict[str, str]]:
    """Chunks and vectors of the existing index, by file, when it was built with the same model and chunking."""
    try:
        old = LoadedIndex(out)
    except FileNotFoundError:
        return {}, {}, {}
    settings = ("model", "chunk_tokens", "overlap_tokens")
    if any(old.manifest.get(key) != getattr(cfg, key) for key in settings):
        return {}, {}, {}
    vectors = old.vectors()
    chunks_by_file: dict[str, list[dict]] = {}
    rows_by_file: dict[str, list[int]] = {}
    for row, chunk in enumerate(old.chunks):
        chunks_by_file.setdefault(chunk["file"], []).append(chunk)
        rows_by_file.setdefault(chunk["file"], []).append(row)
    vectors_by_file = {f: vectors[rows] for f, rows in rows_by_file.items()}
    return chunks_by_file, vectors_by_file, old.manifest.get("files", {})


def build_index(cfg: IndexConfig, embedder: Embedder | None = None) -> dict:
    docs = Path(cfg.docs) if cfg.docs is not None else default_docs()
    if not docs.is_dir():
        raise UserError(f"--docs {docs}: no such folder")
    paths = find_documents(docs)
    if not paths:
        raise UserError(f"--docs {docs}: no Markdown, text or PDF files in it")
    embedder = embedder or Embedder(cfg.model)
    started = time.perf_counter()
    old_chunks, old_vectors, old_digests = _previous(Path(cfg.out), cfg)

    chunks: list[dict] = []
    parts: list[np.ndarray] = []
    digests: dict[str, str] = {}
    skipped, reused, to_embed = [], 0, []
    for path in paths:
        name = path.relative_to(docs).as_posix()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            text = read_document(path)
        if text is None:
            skipped.append(f"{name}: {caught[0].message}" if caught else name)
            print(f"warning: skipped {name} ({caught[0].message if caught else 'unreadable'})")
            continue
        digests[name] = file_digest(text)
        if old_digests.get(name) == digests[name] and name in old_chunks:
            chunks += old_chunks[name]
            parts.append(old_vectors[name])
            reused += 1
            continue
        pieces = chunk_document(text, name, embedder.count_tokens, cfg.chunk_tokens, cfg.overlap_tokens)
        new = [piece.to_dict() for piece in pieces]
        to_embed.append((len(chunks), new))
        chunks += new
        parts.append(np.zeros((len(new), embedder.dim), np.float32))  # filled below, in one batched pass
    texts = [embedding_text(c) for _, new in to_embed for c in new]
    fresh = embedder.encode(texts, cfg.batch_size, progress=len(texts) > 500)
    vectors = np.concatenate(parts) if parts else np.zeros((0, embedder.dim), np.float32)
    row = 0
    for start, new in to_embed:
        vectors[start : start + len(new)] = fresh[row : row + len(new)]
        row += len(new)

    index_type = choose_index_type(len(chunks), cfg.index_type)
    manifest = {
        "docs": str(docs),
        "model": cfg.model,
        "chunk_tokens": cfg.chunk_tokens,
        "overlap_tokens": cfg.overlap_tokens,
        "index_type": index_type,
        "files": digests,
        "skipped": skipped,
        "dim": int(vectors.shape[1]),
    }
    save_index(Path(cfg.out), chunks, vectors, manifest)
    return {
        "index": str(cfg.out),
        "files": len(digests),
        "files_reused": reused,
        "files_embedded": len(to_embed),
        "files_skipped": len(skipped),
        "chunks": len(chunks),
        "chunks_embedded": len(texts),
        "index_type": index_type,
        "seconds": round(time.perf_counter() - started, 2),
    }
