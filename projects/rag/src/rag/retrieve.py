"""Hybrid retrieval: dense (faiss) + lexical (BM25) lists fused by reciprocal rank, optionally re-ranked.

Dense search finds paraphrases ("how do I continue a stopped run" -> "resume"); BM25 finds rare exact words
(flag names, file names) that embeddings blur. Reciprocal rank fusion (Cormack et al. 2009) adds 1 / (60 + rank)
from each list: it needs no score calibration between the two, which is why it is the usual default.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from .embed import Embedder
from .store import LoadedIndex

RRF_K = 60


@dataclass
class Hit:
    chunk: dict
    score: float
    sources: dict = field(default_factory=dict)
    """Rank in each list the hit came from, e.g. {"dense": 1, "bm25": 4}."""

    def citation(self) -> str:
        return f"{self.chunk['file']}:{self.chunk['line_start']}-{self.chunk['line_end']}"


def reciprocal_rank_fusion(rankings: dict[str, list[int]], k: int = RRF_K) -> list[tuple[int, float, dict]]:
    """Fuse ranked id lists -> [(id, score, {list: rank})], best first; ties keep the first list's order."""
    scores: dict[int, float] = {}
    ranks: dict[int, dict] = {}
    for name, ids in rankings.items():
        for rank, i in enumerate(ids, start=1):
            scores[i] = scores.get(i, 0.0) + 1.0 / (k + rank)
            ranks.setdefault(i, {})[name] = rank
    order = sorted(scores, key=lambda i: -scores[i])
    return [(i, scores[i], ranks[i]) for i in order]


class Retriever:
    def __init__(self, index_dir: Path, embedder: Embedder | None = None, rerank: str | None = None):
        self.index = LoadedIndex(index_dir)
        self.embedder = embedder or Embedder(self.index.manifest["model"])
        _ = self.embedder.model  # load now, so the first question's latency is the search, not the model load
        self.reranker = None
        if rerank:
            from sentence_transformers import CrossEncoder

            self.reranker = CrossEncoder(rerank)

    def search(self, question: str, k: int = 5, mode: str = "hybrid", candidates: int = 30) -> list[Hit]:
        pool = max(k, candidates)
        rankings = {}
        if mode in ("hybrid", "dense"):
            query = self.embedder.encode([question])[0]
            rankings["dense"] = [i for i, _ in self.index.dense_search(query, pool)]
        if mode in ("hybrid", "bm25"):
            rankings["bm25"] = [i for i, _ in self.index.bm25_search(question, pool)]
        hits = [Hit(self.index.chunks[i], s, r) for i, s, r in reciprocal_rank_fusion(rankings)]
        if self.reranker is not None and hits:
            scores = self.reranker.predict([(question, h.chunk["text"]) for h in hits])
            for hit, score in zip(hits, scores, strict=True):
                hit.score = float(score)
            hits.sort(key=lambda h: -h.score)
        return hits[:k]

    def timed_search(self, question: str, k: int = 5, mode: str = "hybrid") -> tuple[list[Hit], float]:
        started = time.perf_counter()
        hits = self.search(question, k, mode)
        return hits, (time.perf_counter() - started) * 1000
