"""`rag eval --pictures DIR` draws retrieval.png (the top passages of a few questions, hits in green) into DIR, and
without the flag writes nothing anywhere: not into the index folder, not into the working folder."""

from __future__ import annotations

import json

from matplotlib.colors import to_hex
from PIL import Image

from rag.cli import main
from rag.pictures import HIT, MISS, pictured_questions, retrieval_figure
from rag.retrieve import Retriever

QUESTIONS = [
    {"question": "How do zebras differ from one another?", "source": "notes/zebra.md"},
    {"question": "How long does the dough rise?", "source": "notes/cooking.txt"},
    {"question": "What does the exporter write?", "source": "guide/export.md"},
]


def write_questions(path):
    path.write_text("".join(json.dumps(row) + "\n" for row in QUESTIONS), encoding="utf-8")
    return path


def files_under(folder):
    return sorted(path.relative_to(folder) for path in folder.rglob("*"))


def test_eval_draws_retrieval_png_only_when_asked(index_dir, tmp_path, monkeypatch, capsys):
    questions = write_questions(tmp_path / "q.jsonl")
    index_before = files_under(index_dir)
    monkeypatch.chdir(tmp_path)
    main(["eval", "--index", str(index_dir), "--questions", str(questions)])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["pictures"] == {}
    assert files_under(tmp_path) == [questions.relative_to(tmp_path)] and files_under(index_dir) == index_before

    main(["eval", "--index", str(index_dir), "--questions", str(questions), "--pictures", str(tmp_path / "pics")])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["pictures"] == {"retrieval": str(tmp_path / "pics" / "retrieval.png")}
    with Image.open(result["pictures"]["retrieval"]) as image:
        assert image.format == "PNG" and image.size[0] > 600 and image.size[1] > 3 * 150  # a panel per question
    assert files_under(index_dir) == index_before


def test_each_panel_shows_a_questions_top_passages_with_its_source_in_green(index_dir, embedder):
    retriever = Retriever(index_dir, embedder)
    fig = retrieval_figure(retriever, QUESTIONS, k=3)
    assert len(fig.axes) == len(QUESTIONS)
    for ax, row in zip(fig.axes, QUESTIONS, strict=True):
        hits = retriever.search(row["question"], 3)
        labels = [tick.get_text() for tick in ax.get_yticklabels()]
        assert labels == [hit.citation() for hit in hits]  # best first, cited as file:lines
        colours = [bar.get_facecolor() for bar in ax.patches]
        green = [to_hex(colour) == HIT for colour in colours]
        assert green == [hit.chunk["file"] == row["source"] for hit in hits] and green[0]  # each is found at rank 1
        assert all(to_hex(colour) == MISS for colour, is_hit in zip(colours, green, strict=True) if not is_hit)
        assert [bar.get_width() for bar in ax.patches] == [hit.score for hit in hits]
        assert row["source"] in ax.get_title(loc="left") and "found at rank 1" in ax.get_title(loc="left")


def test_a_few_questions_spread_over_the_set_are_pictured():
    rows = [{"question": str(i), "source": f"{i}.md"} for i in range(36)]
    assert [row["question"] for row in pictured_questions(rows)] == ["0", "12", "23", "35"]
    assert pictured_questions(rows[:2]) == rows[:2]
