"""Retrieval quality and speed on a question set: recall@1/5/10, MRR, latency p50/p95 (retrieval only).

A question counts as found at k when one of the top-k passages comes from its source file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dlshared.cli import UserError

from .answer import check_question
from .retrieve import Retriever

BUNDLED_QUESTIONS = Path(__file__).with_name("questions.jsonl")


def load_questions(path: Path) -> list[dict]:
    if not path.is_file():
        raise UserError(f"--questions {path}: no such file")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{number}: not valid JSON ({err.msg})") from None
        fields = (row.get("question"), row.get("source")) if isinstance(row, dict) else (None,)
        if not all(isinstance(field, str) for field in fields):
            raise UserError(f'{path}:{number}: expected {{"question": "...", "source": "relative/path.md"}}')
        try:
            check_question(row["question"])
        except UserError as err:
            raise UserError(f"{path}:{number}: {err}") from None
        rows.append(row)
    if not rows:
        raise UserError(f"{path}: no questions")
    return rows


def evaluate(retriever: Retriever, questions: list[dict], mode: str = "hybrid", ks=(1, 5, 10)) -> dict:
    retriever.search("warm-up", 1, mode)  # first call pays for lazy initialisation; users see steady state
    found_at, latencies, misses = [], [], []
    for row in questions:
        hits, ms = retriever.timed_search(row["question"], max(ks), mode)
        latencies.append(ms)
        files = [h.chunk["file"] for h in hits]
        rank = files.index(row["source"]) + 1 if row["source"] in files else None
        found_at.append(rank)
        if rank is None or rank > 5:
            misses.append({"question": row["question"], "source": row["source"], "got": files[:3]})
    n = len(questions)
    metrics = {f"recall@{k}": sum(r is not None and r <= k for r in found_at) / n for k in ks}
    metrics["mrr"] = sum(1 / r for r in found_at if r is not None) / n
    metrics["latency_ms_p50"] = float(np.percentile(latencies, 50))
    metrics["latency_ms_p95"] = float(np.percentile(latencies, 95))
    metrics.update(questions=n, mode=mode, misses_at_5=misses)
    return metrics
