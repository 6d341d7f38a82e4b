"""faiss against Milvus Lite on the same synthetic vectors: build time, size, query latency and recall@10.

    uv run python projects/rag/benchmarks/stores.py --sizes 10000 1000000

The indexes are rag's own: `build_faiss` (flat, hnsw, ivfpq) and, for Milvus Lite, `write_milvus` + `MilvusVectors`
(FLAT, HNSW with the same M and ef), which is what `rag index --store milvus` writes and `rag ask` searches. The
vectors are `rag bench`'s clustered 384-d unit vectors; queries are perturbed copies of stored ones, asked one at a
time as a user asks them; recall@10 is against exact search. Size: faiss's serialised index, Milvus Lite's
milvus.db folder on disk (what it loads). Prints one JSON line per row, then the machine's thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from rag.bench import synthetic_vectors
from rag.milvus import MilvusVectors, release_milvus_lite, write_milvus
from rag.store import MILVUS_LITE, build_faiss


def timed_queries(search, queries: np.ndarray, truth: np.ndarray) -> dict:
    """Latency p50/p95 of one query at a time, and recall@10 against the true neighbours."""
    latencies, found = [], []
    for query, true in zip(queries, truth, strict=True):
        started = time.perf_counter()
        ids = search(query)
        latencies.append((time.perf_counter() - started) * 1000)
        found.append(len(set(ids) & set(true)) / 10)
    p50, p95 = np.percentile(latencies, [50, 95])
    return {
        "query_ms_p50": round(float(p50), 3),
        "query_ms_p95": round(float(p95), 3),
        "recall@10": float(np.mean(found)),
    }


def folder_mb(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20, 1)


def bench_faiss(vectors, queries, truth, index_type: str) -> dict:
    started = time.perf_counter()
    index = build_faiss(vectors, index_type)
    build_s = time.perf_counter() - started
    size = faiss.serialize_index(index).nbytes / 2**20
    timing = timed_queries(lambda q: index.search(q.reshape(1, -1), 10)[1][0], queries, truth)
    return {"store": "faiss", "index": index_type, "build_s": round(build_s, 2), "mb": round(size, 1), **timing}


def bench_milvus_lite(vectors, queries, truth, index_type: str, work: Path) -> dict:
    folder = work / f"milvus-{index_type}"
    folder.mkdir()
    started = time.perf_counter()
    collection = write_milvus(folder, vectors, index_type, uri=None)
    manifest = {"milvus_collection": collection, "index_type": index_type, "chunks": len(vectors)}
    store = MilvusVectors(folder, {**manifest, "dim": vectors.shape[1]})  # opened and loaded: ready to search
    build_s = time.perf_counter() - started
    timing = timed_queries(lambda q: [i for i, _ in store.search(q, 10)], queries, truth)
    release_milvus_lite(folder)
    size = folder_mb(folder / MILVUS_LITE)
    return {"store": "milvus-lite", "index": index_type, "build_s": round(build_s, 2), "mb": size, **timing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    parser.add_argument("--faiss", nargs="*", default=["flat", "hnsw", "ivfpq"], help="faiss index types")
    parser.add_argument("--milvus", nargs="*", default=["flat", "hnsw"], help="Milvus Lite index types")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    for n in args.sizes:
        vectors = synthetic_vectors(n, args.dim, rng)
        queries = vectors[rng.integers(0, n, args.queries)]
        queries += 0.05 * rng.standard_normal(queries.shape, dtype=np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        _, truth = build_faiss(vectors, "flat").search(queries, 10)  # [queries, 10]: the true neighbours
        for index_type in args.faiss:
            print(json.dumps({"vectors": n, **bench_faiss(vectors, queries, truth, index_type)}), flush=True)
        with tempfile.TemporaryDirectory(prefix="rag-stores-") as work:
            for index_type in args.milvus:
                row = bench_milvus_lite(vectors, queries, truth, index_type, Path(work))
                print(json.dumps({"vectors": n, **row}), flush=True)
    wait_policy = os.environ.get("OMP_WAIT_POLICY", "default")
    print(json.dumps({"threads": faiss.omp_get_max_threads(), "omp_wait_policy": wait_policy}))


if __name__ == "__main__":
    main()
