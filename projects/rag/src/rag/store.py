"""The index folder: faiss vectors + BM25 + chunk metadata, written once into a staging folder, loaded and checked.

index.faiss     the vector index (flat, HNSW or IVF-PQ); with `--store milvus` instead:
milvus.db/      Milvus Lite's data (or nothing here: a collection on the Milvus server the manifest names)
vectors.npy     the embeddings themselves, so re-indexing embeds only the files that changed
chunks.jsonl    one chunk per line: file, heading, character span, line range, text
bm25/           the bm25s sparse index over the same chunks
manifest.json   model, chunking settings, store, index type, per-file digests, counts, skipped files, build time

Loading checks that the parts agree (as many chunks as vectors, BM25 documents and the manifest says): a file that
is corrupt or cut short is named in one line that says how to rebuild, never a traceback or a wrong answer.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import faiss
import numpy as np

from dlshared.checkpoint import load_json, save_json
from dlshared.cli import UserError

EXACT_UP_TO, HNSW_UP_TO = 50_000, 2_000_000


def choose_index_type(n: int, requested: str = "auto") -> str:
    """Exact search is fast enough below ~50k vectors; HNSW to a few million; IVF-PQ (compressed) beyond."""
    if requested != "auto":
        return requested
    return "flat" if n <= EXACT_UP_TO else "hnsw" if n <= HNSW_UP_TO else "ivfpq"


def build_faiss(vectors: np.ndarray, index_type: str, seed: int = 0) -> faiss.Index:
    """An inner-product index over unit vectors (inner product = cosine similarity)."""
    n, dim = vectors.shape
    if index_type == "flat" or n == 0:
        index = faiss.IndexFlatIP(dim)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 100
        index.hnsw.efSearch = 128  # recall@10 ~0.95+ on 384-d clustered data
    elif index_type == "ivfpq":
        # trained on a sample of 64 points per list: k-means on all of a million vectors would cost minutes for no
        # gain; dim/4 sub-quantisers of 8 bits: 96 bytes per 384-d vector
        nlist = ivf_lists(n)
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, dim // 4, 8, faiss.METRIC_INNER_PRODUCT)
        sample = vectors[np.random.default_rng(seed).permutation(n)[: max(64 * nlist, 40 * 256)]]  # PQ: 256 codes
        index.train(sample)
        index.nprobe = min(nlist, 32)
    else:
        raise ValueError(f"unknown index type {index_type!r}")
    index.add(vectors)
    return index


def ivf_lists(n: int) -> int:
    """~sqrt(n) inverted lists, and at least 39 training points per centroid (faiss warns below that)."""
    return max(1, min(int(math.sqrt(n)), n // 39))


def build_bm25(texts: list[str]):
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    return retriever


def check_index_type(index_type: str, n: int, dim: int, lite: bool = False) -> None:
    """IVF-PQ learns 256 codes per sub-vector (so needs 256 vectors) and cuts vectors into dim/4 pieces; Milvus Lite
    (`lite`) has no IVF-PQ index."""
    if index_type == "ivfpq" and lite:
        raise UserError("--index-type ivfpq: Milvus Lite has no IVF-PQ index; use flat or hnsw, or a server (--uri)")
    if index_type == "ivfpq" and n < 256:
        raise UserError(f"--index-type ivfpq needs at least 256 vectors (chunks), not {n}; use flat or hnsw")
    if index_type == "ivfpq" and dim % 4:
        raise UserError(f"--index-type ivfpq needs a vector size that is a multiple of 4, not {dim}; use flat or hnsw")


MILVUS_LITE = "milvus.db"
"""Milvus Lite's data folder inside the index folder (pymilvus starts Milvus Lite for a path ending in .db)."""


def save_index(folder: Path, chunks: list[dict], vectors: np.ndarray, manifest: dict) -> None:
    """Write every part into `folder`, a fresh staging folder (see indexer.build_index): the vector store after the
    files (a failure then leaves no collection on a server), the manifest last."""
    np.save(folder / "vectors.npy", vectors)
    (folder / "chunks.jsonl").write_text(
        "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in chunks), encoding="utf-8"
    )
    if chunks:
        build_bm25([_bm25_text(c) for c in chunks]).save(str(folder / "bm25"))
    if manifest.get("store") == "milvus":
        from .milvus import write_milvus

        manifest = {
            **manifest,
            "milvus_collection": write_milvus(folder, vectors, manifest["index_type"], manifest["milvus_uri"]),
        }
    else:
        faiss.write_index(build_faiss(vectors, manifest["index_type"]), str(folder / "index.faiss"))
    save_json(
        {**manifest, "chunks": len(chunks), "built": time.strftime("%Y-%m-%d %H:%M:%S")},
        folder / "manifest.json",
    )


def _bm25_text(chunk: dict) -> str:
    return f"{chunk['file']} {chunk['heading']}\n{chunk['text']}"


class IndexProblem(UserError):
    """The index folder is missing, or one of its files is unreadable or disagrees with the others."""


MANIFEST_FIELDS = {"model": str, "dim": int, "chunks": int, "index_type": str, "files": dict, "chunk_tokens": int}
CHUNK_FIELDS = ("file", "heading", "line_start", "line_end", "text")


class LoadedIndex:
    """An index folder in memory: faiss (or Milvus), BM25, chunks and manifest, checked to agree with one another
    (as many chunks as stored vectors, BM25 documents, saved vectors and the manifest's count)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        if not (self.folder / "manifest.json").is_file():
            raise IndexProblem(
                f"--index {folder}: no index there; build one with `rag index --docs DIR --out {folder}`"
            )
        self.manifest = self._read("manifest.json", _read_manifest)
        self.chunks = self._read("chunks.jsonl", _read_chunks)
        self.faiss, self.milvus = None, None
        if self.manifest.get("store", "faiss") == "milvus":  # the manifest says where the vectors are: no flag
            self.milvus = self._open_milvus()
        else:
            self.faiss = self._read("index.faiss", lambda path: faiss.read_index(str(path)))
        self.bm25 = self._read("bm25", _read_bm25) if self.chunks else None
        self._check_counts()

    def broken(self, name: str, problem: str) -> IndexProblem:
        manifest = getattr(self, "manifest", {})
        store = " --store milvus" if manifest.get("store") == "milvus" else ""
        store += f" --uri {manifest['milvus_uri']}" if store and manifest.get("milvus_uri") else ""
        command = f"rag index --docs DIR --out {self.folder}{store} --overwrite"
        return IndexProblem(f"{self.folder / name}: {problem}; rebuild the index: {command}")

    def _open_milvus(self):
        """Milvus Lite's files are named when missing or unreadable; a server's collection by the manifest naming it.
        An unreachable server or a Lite database open in another process is a UserError: rebuilding would not help."""
        from pymilvus.exceptions import MilvusException

        from .milvus import MilvusVectors

        lite = self.manifest.get("milvus_uri") is None
        name = MILVUS_LITE if lite else "manifest.json"
        if not isinstance(self.manifest.get("milvus_collection"), str):
            raise self.broken("manifest.json", "no str 'milvus_collection'")
        if lite and not (self.folder / MILVUS_LITE).is_dir():
            raise self.broken(MILVUS_LITE, "missing")
        try:
            return MilvusVectors(self.folder, self.manifest)
        except IndexProblem as err:  # Lite could not open its files
            raise self.broken(name, str(err)) from None
        except MilvusException as err:  # the collection is gone, or unreadable
            raise self.broken(
                name, f"Milvus collection {self.manifest['milvus_collection']!r}: {err.message}"
            ) from None

    def _read(self, name: str, read):
        try:
            return read(self.folder / name)
        except IndexProblem as err:  # the reader's own, more precise reason
            raise self.broken(name, str(err)) from None
        except Exception:  # missing, cut short, not this format: all mean "rebuild it"
            raise self.broken(name, "missing, corrupt or cut short") from None

    def _check_counts(self) -> None:
        n, m = len(self.chunks), self.manifest
        if m["chunks"] != n:
            raise self.broken("chunks.jsonl", f"{n} chunks, but manifest.json says {m['chunks']} (cut short?)")
        if self.faiss is not None and (self.faiss.ntotal, self.faiss.d) != (n, m["dim"]):
            shape = f"{self.faiss.ntotal} vectors of size {self.faiss.d}"
            raise self.broken("index.faiss", f"{shape} for {n} chunks of size {m['dim']}")
        if self.milvus is not None and self.milvus.ntotal != n:
            name = MILVUS_LITE if self.milvus.uri is None else "manifest.json"
            raise self.broken(
                name, f"Milvus collection {self.milvus.collection!r} holds {self.milvus.ntotal} vectors for {n} chunks"
            )
        if self.bm25 is not None and self.bm25.scores["num_docs"] != n:
            raise self.broken("bm25", f"{self.bm25.scores['num_docs']} documents for {n} chunks")
        shape = self._read("vectors.npy", lambda path: np.load(path, mmap_mode="r").shape)  # reads the header only
        if shape != (n, m["dim"]):
            raise self.broken("vectors.npy", f"shape {shape} for {n} chunks of size {m['dim']}")

    def vectors(self) -> np.ndarray:
        return np.load(self.folder / "vectors.npy")

    def dense_search(self, query_vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        k = min(k, len(self.chunks))
        if k == 0:
            return []
        if self.milvus is not None:
            return self.milvus.search(query_vector.astype(np.float32), k)
        scores, ids = self.faiss.search(query_vector.reshape(1, -1).astype(np.float32), k)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def bm25_search(self, question: str, k: int) -> list[tuple[int, float]]:
        import bm25s

        k = min(k, len(self.chunks))
        if k == 0 or self.bm25 is None:
            return []
        # words, not ids: bm25s maps them through the index's own vocabulary (unknown words drop out)
        words = bm25s.tokenize([question], stopwords="en", return_ids=False, show_progress=False)
        if not words[0]:
            return []
        ids, scores = self.bm25.retrieve(words, k=k, show_progress=False, n_threads=1)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if s > 0]


def previous_manifest(folder: Path) -> dict:
    """The manifest of the index at `folder`; {} when there is none or it cannot be read (nothing to keep)."""
    try:
        return _read_manifest(Path(folder) / "manifest.json")
    except Exception:
        return {}


def _read_manifest(path: Path) -> dict:
    manifest = load_json(path)
    if not isinstance(manifest, dict):
        raise IndexProblem("not a JSON object")
    for key, kind in MANIFEST_FIELDS.items():
        if not isinstance(manifest.get(key), kind):
            raise IndexProblem(f"no {kind.__name__} {key!r}")
    return manifest


def _read_chunks(path: Path) -> list[dict]:
    chunks = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            chunk = json.loads(line)
        except json.JSONDecodeError:
            raise IndexProblem(f"line {number} is not valid JSON (cut short?)") from None
        if not isinstance(chunk, dict) or not all(key in chunk for key in CHUNK_FIELDS):
            raise IndexProblem(f"line {number} is not a chunk")
        chunks.append(chunk)
    return chunks


def _read_bm25(path: Path):
    import bm25s

    return bm25s.BM25.load(str(path))
