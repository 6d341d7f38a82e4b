"""`rag index`: documents -> chunks -> embeddings -> index folder, embedding only files that changed."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

from dlshared.cli import UserError
from dlshared.display import terminal_text
from dlshared.outputs import staged_output

from .config import IndexConfig
from .embed import Embedder
from .ingest import MB, chunk_document, embedding_text, file_digest, find_documents, read_document
from .milvus import connect_milvus, drop_replaced_collection, release_milvus_lite
from .store import LoadedIndex, check_index_type, choose_index_type, previous_manifest, save_index


def default_docs() -> Path:
    """This repository's Markdown: the workspace root above the installed package (READMEs, course lessons)."""
    here = Path(__file__).resolve()
    for folder in here.parents:
        if (folder / "pyproject.toml").is_file() and (folder / "projects").is_dir():
            return folder
    return here.parents[2]  # a fork: the project's own folder (README and docs)


def _previous(out: Path, cfg: IndexConfig) -> tuple[dict[str, list[dict]], dict[str, np.ndarray], dict[str, str]]:
    """Chunks and vectors of the index being replaced, by file, when it was built with the same model and chunking
    (and can be read: a broken one is simply rebuilt from scratch)."""
    if not cfg.overwrite:
        return {}, {}, {}
    try:
        old = LoadedIndex(out)
    except UserError as problem:  # broken, or its Milvus server out of reach
        if (out / "manifest.json").exists():
            print(f"note: embedding every file again, the old index is unreadable ({terminal_text(str(problem))})")
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


def _skip(skipped: list[tuple[str, str]], name: str, why: str) -> None:
    skipped.append((name, why))
    print(f"warning: skipped {terminal_text(name)} ({terminal_text(why)})", flush=True)


def build_index(cfg: IndexConfig, embedder: Embedder | None = None) -> dict:
    """Index `cfg.docs` into `cfg.out`: staged beside it and renamed into place once complete (dlshared.outputs),
    so a folder rag did not write is never touched and a crash leaves the old index or the new one."""
    if cfg.overlap_tokens >= cfg.chunk_tokens:  # before anything is loaded or written
        raise UserError(f"--overlap-tokens {cfg.overlap_tokens}: must be less than --chunk-tokens {cfg.chunk_tokens}")
    if cfg.uri is not None and cfg.store != "milvus":
        raise UserError(f"--uri {cfg.uri}: a Milvus server's address; add --store milvus")
    docs = Path(cfg.docs) if cfg.docs is not None else default_docs()
    if not docs.is_dir():
        raise UserError(f"--docs {docs}: no such folder")
    max_bytes = int(cfg.max_file_mb * MB)
    paths, unsafe = find_documents(docs, max_bytes)
    if not paths:
        raise UserError(f"--docs {docs}: no Markdown, text or PDF files to read in it ({len(unsafe)} skipped)")
    out = Path(cfg.out)
    if cfg.store == "milvus" and cfg.uri is not None:
        connect_milvus(cfg.uri, out).close()  # a server out of reach fails now, not after the embedding
    replaced = previous_manifest(out) if cfg.overwrite else {}
    with staged_output(out, cfg.overwrite, sources=(docs,)) as stage:
        skipped: list[tuple[str, str]] = []
        for name, why in unsafe:
            _skip(skipped, name, why)
        embedder = embedder or Embedder(cfg.model)
        started = time.perf_counter()
        result = _build(stage, docs, paths, skipped, cfg, embedder, _previous(out, cfg))
        release_milvus_lite(out)  # this process's Lite server over the index being replaced, before it moves
    drop_replaced_collection(replaced)
    return {"index": str(cfg.out), **result, "seconds": round(time.perf_counter() - started, 2)}


def _build(stage: Path, docs: Path, paths: list[Path], skipped: list, cfg, embedder, previous) -> dict:
    """Read, chunk and embed (reusing the vectors of files that did not change), then save into `stage`."""
    old_chunks, old_vectors, old_digests = previous
    chunks: list[dict] = []
    parts: list[np.ndarray] = []
    digests: dict[str, str] = {}
    reused, to_embed = 0, []
    for path in paths:
        name = path.relative_to(docs).as_posix()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            text = read_document(path, int(cfg.max_file_mb * MB))
        if text is None:
            _skip(skipped, name, str(caught[0].message).removeprefix(f"skipped {path}: ") if caught else "unreadable")
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
    index_type = choose_index_type(len(chunks), cfg.index_type)
    lite = cfg.store == "milvus" and cfg.uri is None
    check_index_type(index_type, len(chunks), embedder.dim, lite)  # before the embedding, which is the slow part
    texts = [embedding_text(c) for _, new in to_embed for c in new]
    fresh = embedder.encode(texts, cfg.batch_size, progress=len(texts) > 500)
    vectors = np.concatenate(parts) if parts else np.zeros((0, embedder.dim), np.float32)
    row = 0
    for start, new in to_embed:
        vectors[start : start + len(new)] = fresh[row : row + len(new)]
        row += len(new)
    skipped_lines = [f"{name}: {why}" for name, why in skipped]  # what was left out, and why: summary and manifest
    manifest = {
        "docs": str(docs),
        "model": cfg.model,
        "chunk_tokens": cfg.chunk_tokens,
        "overlap_tokens": cfg.overlap_tokens,
        "store": cfg.store,
        **({"milvus_uri": cfg.uri} if cfg.store == "milvus" else {}),
        "index_type": index_type,
        "files": digests,
        "skipped": skipped_lines,
        "dim": int(vectors.shape[1]),
    }
    save_index(stage, chunks, vectors, manifest)
    return {
        "files": len(digests),
        "files_reused": reused,
        "files_embedded": len(to_embed),
        "files_skipped": len(skipped),
        "skipped": skipped_lines,
        "chunks": len(chunks),
        "chunks_embedded": len(texts),
        "store": cfg.store,
        "index_type": index_type,
    }
