"""Output is data, not markup: a document's text and its file name reach the page as text (rendered with a
CommonMark renderer, only the demo's own tags appear) and the terminal without escape sequences."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt

from dlshared.display import markdown_text, terminal_text
from rag.config import IndexConfig
from rag.demo import passages_markdown, respond
from rag.indexer import build_index
from rag.retrieve import Hit, Retriever

EVIL = (
    "Resuming training needs the --resume flag ![x](http://evil/x.png) and <img src=x onerror=alert(1)> "
    "then [click here](javascript:alert(1)) or <http://evil/auto> *now* $x^2$ </pre></details> & done."
)
ANSI = "\x1b[2J\x1b]0;pwned\x07\x1b[31mResuming is done\x1b[0m with the saved optimizer state.\r"
EVIL_DOCS = {
    "<img src=x onerror=alert(1)>.md": f"# Resuming <b>now</b>\n\n{EVIL}\n\n```\n</pre>\n```\n",
    "\x1b[31mred.md": f"# Terminal\n\n{ANSI}\n",
    "notes/zebra.md": "# Zebras\n\nZebras are African equines with striped coats.\n",
}


class Tags(HTMLParser):
    """The tags and the text of rendered HTML."""

    def __init__(self, rendered: str):
        super().__init__(convert_charrefs=True)
        self.tags, self.text = [], []
        self.feed(rendered)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def render(markdown: str) -> Tags:
    return Tags(MarkdownIt("commonmark").render(markdown))


@pytest.mark.parametrize("text", [EVIL, "![x](http://evil/x.png)", "<img src=x>", "[a](javascript:alert(1))", "# h"])
def test_markdown_text_renders_as_exactly_that_text(text):
    page = render(markdown_text(text))
    assert [tag for tag, _ in page.tags] == ["p"]  # no img, no a, no heading, no emphasis: one paragraph of text
    assert "".join(page.text).strip() == text


def test_terminal_text_drops_escape_sequences():
    assert terminal_text(ANSI) == "Resuming is done with the saved optimizer state."
    assert terminal_text("tab\tand\nnewline\x07\x9b2J") == "tab\tand\nnewline2J"


@pytest.fixture(scope="module")
def evil_index(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("evil")
    for name, text in EVIL_DOCS.items():
        (root / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "docs" / name).write_text(text, encoding="utf-8")
    build_index(IndexConfig(docs=root / "docs", out=root / "idx"), embedder)
    return root / "idx"


def test_passages_show_file_names_and_text_as_text():
    chunk = {"file": "<img src=x onerror=alert(1)>.md", "heading": "<b>x</b>\n\nsplit", "text": EVIL + "\n\n" + EVIL}
    page = render(passages_markdown([Hit({**chunk, "line_start": 1, "line_end": 3}, 0.5)]))
    assert {tag for tag, _ in page.tags} <= {"details", "summary", "code", "pre"}
    assert all(attrs == {} for _, attrs in page.tags)
    assert EVIL in "".join(page.text) and chunk["file"] in "".join(page.text)


def test_the_demo_answer_and_passages_are_text(evil_index, embedder):
    retriever = Retriever(evil_index, embedder)
    answer, sources = list(respond(retriever, None, 3, "What does resuming training need?", "hybrid"))[-1]
    assert "evil" in answer  # the passage was quoted...
    shown = render(answer)
    assert [tag for tag, _ in shown.tags] == ["p"] and "![x](http://evil/x.png)" in "".join(shown.text)  # ...as text
    passages = render(sources)
    assert {tag for tag, _ in passages.tags} <= {"details", "summary", "code", "pre", "p", "em"}
    assert all(attrs == {} for _, attrs in passages.tags) and "<img src=x onerror=alert(1)>" in "".join(passages.text)


def test_ask_prints_no_escape_sequences_but_returns_the_text(evil_index, embedder, capsys, monkeypatch):
    from rag.cli import main

    monkeypatch.setattr("rag.retrieve.Embedder", lambda *args, **kwargs: embedder)
    main(["ask", "Is resuming done with the saved optimizer state?", "--index", str(evil_index), "--k", "3"])
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert "\x1b[31mred.md" in [source["file"] for source in result["sources"]]  # the data is kept as it is...
    assert "\x1b" in result["answer"]
    printed = "\n".join(lines[:-1])
    assert "\x1b" not in printed and "\r" not in printed and "\x07" not in printed  # ...the terminal sees none
    assert "Resuming is done" in printed and "] red.md:" in printed


def test_questions_are_capped_in_the_demo(evil_index, embedder):
    retriever = Retriever(evil_index, embedder)
    answer, sources = list(respond(retriever, None, 3, "why? " * 300, "hybrid"))[-1]
    assert "at most 1000" in answer and sources == ""
