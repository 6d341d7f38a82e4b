"""Chunking covers every character, respects headings and the token budget; bad files are skipped, not fatal."""

from __future__ import annotations

import pytest

from rag.ingest import chunk_document, find_documents, read_document


def words(text: str) -> int:  # a stand-in tokenizer: whitespace words
    return len(text.split())


DOC = (
    "\n\nIntro line before any heading.\n# Title\n\nFirst paragraph " + "word " * 30 + "\n\n"
    "## Code\n\n```python\n# not a heading\nx = 1\n```\n\n## Long line\n\n" + "averyveryverylongtoken " * 50 + "\n"
    "### Deeper\ntext at the end without newline"
)


@pytest.mark.parametrize("budget, overlap", [(8, 2), (20, 5), (200, 0), (3, 0)])
def test_chunks_cover_every_character_and_respect_the_budget(budget, overlap):
    chunks = chunk_document(DOC, "doc.md", words, budget, overlap)
    covered = [False] * len(DOC)
    for c in chunks:
        assert c.text == DOC[c.start : c.end]
        assert words(c.text) <= budget or len(c.text.split()) == 1  # only an unsplittable word may exceed it
        for i in range(c.start, c.end):
            covered[i] = True
        lines = DOC.splitlines(keepends=True)
        assert "".join(lines[c.line_start - 1 : c.line_end]).find(c.text.strip().splitlines()[0]) >= 0
    assert all(covered), [i for i, ok in enumerate(covered) if not ok][:10]


def test_chunks_follow_headings_and_ignore_hashes_in_code():
    chunks = chunk_document(DOC, "docs/doc.md", words, 200, 0)
    headings = [c.heading for c in chunks]
    assert headings == [
        "docs/doc",
        "docs/doc > Title",
        "docs/doc > Title > Code",
        "docs/doc > Title > Long line",
        "docs/doc > Title > Long line > Deeper",
    ]
    assert "# not a heading" in chunks[2].text
    assert chunks[0].start == 0 and chunks[0].text.startswith("\n\nIntro")  # text before any heading: its own chunk


def test_overlap_repeats_text_between_neighbours():
    text = "# H\n" + "".join(f"line number {i} here\n" for i in range(20))
    chunks = chunk_document(text, "a.md", words, 12, 4)
    assert len(chunks) > 2
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.start < a.end  # consecutive chunks share a line


def test_binary_and_undecodable_files_are_skipped_with_a_warning(tmp_path):
    (tmp_path / "ok.md").write_text("# fine\n")
    (tmp_path / "blob.txt").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.md").write_text("hidden")
    found = find_documents(tmp_path)
    assert [p.name for p in found] == ["blob.txt", "latin.txt", "ok.md"]
    with pytest.warns(UserWarning, match="binary"):
        assert read_document(tmp_path / "blob.txt") is None
    with pytest.warns(UserWarning, match="utf-8"):
        assert read_document(tmp_path / "latin.txt") is None
    assert read_document(tmp_path / "ok.md") == "# fine\n"
