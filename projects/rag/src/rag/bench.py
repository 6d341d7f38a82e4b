"""Index types at scale on synthetic vectors: build time, memory, query latency and recall@10 against exact search.

Synthetic unit vectors drawn around a few thousand random centres (clustered, like real embeddings, rather than
uniform noise, on which every approximate index looks bad). Queries are perturbed copies of stored vectors.

    uv run rag bench --sizes 10000 --profile   # then a query's path under torch.profiler: trace.json, top_ops.txt

rag trains nothing: `--profile` records what a user's query costs instead, embedding the question (the bundled
all-MiniLM-L6-v2, torch) and searching a flat index (faiss: one labelled block, its insides are not torch's).
"""

from __future__ import annotations

import os
import time

import faiss
import numpy as np

from dlshared.cli import UserError
from dlshared.profiling import profile_folder, profile_steps

from .config import BenchArgs
from .store import build_faiss, check_index_type


def synthetic_vectors(n: int, dim: int, rng: np.random.Generator, centres: int = 2048) -> np.ndarray:
    means = rng.standard_normal((centres, dim), dtype=np.float32)
    x = means[rng.integers(0, centres, n)] + 0.7 * rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _index_bytes(index: faiss.Index) -> int:
    return int(faiss.serialize_index(index).nbytes)


def bench(args: BenchArgs) -> dict:
    """For each size and index type: build seconds, serialised size, query latency p50/p95 and recall@10."""
    profile_out = profile_folder("rag", args.profile, args.profile_out)
    for n in args.sizes:  # every relation between flags, before the first (possibly hour-long) build
        if n < 10:
            raise UserError(f"--sizes {n}: recall@10 needs at least 10 vectors")
        for kind in args.index_types:
            check_index_type(kind, n, args.dim)
    rng = np.random.default_rng(args.seed)
    rows = []
    for n in args.sizes:
        vectors = synthetic_vectors(n, args.dim, rng)
        picks = rng.integers(0, n, args.queries)
        queries = vectors[picks] + 0.05 * rng.standard_normal((args.queries, args.dim), dtype=np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        exact = faiss.IndexFlatIP(args.dim)
        exact.add(vectors)
        _, truth = exact.search(queries, 10)  # (Q, 10): the true nearest neighbours
        for kind in args.index_types:
            started = time.perf_counter()
            index = build_faiss(vectors, kind, seed=args.seed)
            build_s = time.perf_counter() - started
            latencies, found = [], []
            for q, true in zip(queries, truth, strict=True):  # one query at a time, as a user asks
                t = time.perf_counter()
                _, ids = index.search(q.reshape(1, -1), 10)
                latencies.append((time.perf_counter() - t) * 1000)
                found.append(len(set(ids[0]) & set(true)) / 10)
            p50, p95 = np.percentile(latencies, [50, 95])
            rows.append(
                {
                    "vectors": n,
                    "index": kind,
                    "build_s": round(build_s, 2),
                    "index_mb": round(_index_bytes(index) / 2**20, 1),
                    "query_ms_p50": round(float(p50), 3),
                    "query_ms_p95": round(float(p95), 3),
                    "recall@10": round(float(np.mean(found)), 4),
                }
            )
            print(", ".join(f"{key} {value}" for key, value in rows[-1].items()), flush=True)
            del index
    threads = faiss.omp_get_max_threads()
    wait_policy = os.environ.get("OMP_WAIT_POLICY", "default")  # spin-waiting threads slow a shared machine
    result = {
        "dim": args.dim,
        "queries": args.queries,
        "threads": threads,
        "omp_wait_policy": wait_policy,
        "rows": rows,
    }
    if profile_out is not None:
        result["profile"] = profile_query(profile_out, args.sizes[0], args.seed)
    return result


def profile_query(out: str | os.PathLike, n: int, seed: int) -> dict:
    """Bundled questions embedded one at a time and searched in a flat index of `n` synthetic vectors, profiled."""
    from torch.profiler import record_function

    from .embed import Embedder
    from .evaluate import BUNDLED_QUESTIONS, load_questions

    embedder = Embedder()
    index = faiss.IndexFlatIP(embedder.dim)
    index.add(synthetic_vectors(n, embedder.dim, np.random.default_rng(seed)))
    questions = iter([row["question"] for row in load_questions(BUNDLED_QUESTIONS)])

    def query() -> None:
        with record_function("embed"):
            vector = embedder.encode([next(questions)])  # [1, dim]
        with record_function("faiss search"):
            index.search(vector, 10)

    return {"vectors": n, **profile_steps(query, out)}
