"""`rag eval --pictures DIR` draws retrieval.png: what the retriever returned for a few of the evaluated questions.

rag trains nothing, so there are no curves; the picture shows the ranked lists behind recall@k instead. Each panel
is one question: its top-k passages (file:lines) as bars of their score, best on top, green where the passage comes
from the question's source file (a hit), grey otherwise, with the passage's rank in each list it came from.
"""

from __future__ import annotations

import textwrap

import numpy as np

from dlshared.pictures import pyplot

from .retrieve import Retriever

PICTURED_QUESTIONS = 4
HIT, MISS = "#2ca02c", "#b0b0b0"
SCORE_LABEL = {
    "hybrid": "fused score: sum over dense and BM25 of 1 / (60 + rank)",
    "dense": "score: 1 / (60 + dense rank)",
    "bm25": "score: 1 / (60 + BM25 rank)",
}


def pictured_questions(questions: list[dict], count: int = PICTURED_QUESTIONS) -> list[dict]:
    """`count` questions spread evenly over the set (the first, the last and between), so that a set grouped by
    source file shows several files, and the same set always gives the same picture."""
    picks = np.linspace(0, len(questions) - 1, min(count, len(questions))).round().astype(int)
    return [questions[i] for i in dict.fromkeys(picks.tolist())]


def retrieval_figure(retriever: Retriever, questions: list[dict], k: int = 5, mode: str = "hybrid"):
    """One panel per question of `pictured_questions(questions)`, its top-k passages as horizontal bars."""
    plt = pyplot()
    rows = pictured_questions(questions)
    found = [(row, retriever.search(row["question"], k, mode)) for row in rows]
    top = max((hit.score for _, hits in found for hit in hits), default=1.0)
    height = 0.5 + (0.27 * k + 0.75) * len(rows)
    fig, axes = plt.subplots(len(rows), 1, figsize=(7.5, height), sharex=True, squeeze=False)
    for ax, (row, hits) in zip(axes[:, 0], found, strict=True):
        draw_hits(ax, row, hits, k)
    axes[0, 0].set_xlim(0, top * 1.3)  # shared: room for the rank labels right of the longest bar
    axes[-1, 0].set_xlabel(SCORE_LABEL[mode], fontsize=7.5)
    fig.suptitle(f"Top {k} passages per question; green: from the file the question is about", fontsize=9)
    fig.tight_layout()
    return fig


def draw_hits(ax, row: dict, hits: list, k: int) -> None:
    """The passages as bars, rank 1 on top, each labelled with its rank in the lists it came from."""
    colours = [HIT if hit.chunk["file"] == row["source"] else MISS for hit in hits]
    ax.barh(range(len(hits)), [hit.score for hit in hits], color=colours)
    ax.set_yticks(range(len(hits)), [hit.citation() for hit in hits], fontsize=7)
    ax.invert_yaxis()
    for y, hit in enumerate(hits):
        ranks = ", ".join(f"{name} {rank}" for name, rank in hit.sources.items())
        ax.text(hit.score, y, f" {ranks}", va="center", fontsize=6.5, color="#444444")
    found = f"found at rank {colours.index(HIT) + 1}" if HIT in colours else f"not in the top {k}"
    ax.set_title(f"{textwrap.shorten(row['question'], 110)}\nsource {row['source']}: {found}", fontsize=7.5, loc="left")
    ax.tick_params(axis="x", labelsize=7)
