"""Chunking covers every character, respects headings and the token budget; bad files are skipped, not fatal."""

from __future__ import annotations

import json
import os

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
    (tmp_path / "ok.md").write_text("# fine\n", encoding="utf-8")
    (tmp_path / "blob.txt").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.md").write_text("hidden", encoding="utf-8")
    found, skipped = find_documents(tmp_path)
    assert [p.name for p in found] == ["blob.txt", "latin.txt", "ok.md"] and skipped == []
    with pytest.warns(UserWarning, match="binary"):
        assert read_document(tmp_path / "blob.txt") is None
    with pytest.warns(UserWarning, match="utf-8"):
        assert read_document(tmp_path / "latin.txt") is None
    assert read_document(tmp_path / "ok.md") == "# fine\n"


def test_only_regular_files_inside_the_folder_are_read(tmp_path):
    docs, outside = tmp_path / "docs", tmp_path / "outside"
    docs.mkdir(), outside.mkdir()
    (docs / "ok.md").write_text("# fine\n", encoding="utf-8")
    (outside / "secret.md").write_text("the password is hunter2\n", encoding="utf-8")
    (docs / "leak.md").symlink_to(outside / "secret.md")  # a link to a file elsewhere: the reported leak
    (docs / "linked").symlink_to(outside, target_is_directory=True)  # a linked folder
    (docs / "alias.md").symlink_to(docs / "ok.md")  # a link that stays inside: harmless
    (docs / "dangling.md").symlink_to(tmp_path / "nowhere.md")
    (docs / "big.md").write_text("word " * 400, encoding="utf-8")  # 2000 bytes
    os.mkfifo(docs / "pipe.md")  # reading it would block forever
    found, skipped = find_documents(docs, max_bytes=1000)
    assert [p.name for p in found] == ["alias.md", "ok.md"]
    reasons = dict(skipped)
    assert set(reasons) == {"leak.md", "linked/", "dangling.md", "big.md", "pipe.md"}
    assert "outside the folder" in reasons["leak.md"] and "not followed" in reasons["linked/"]
    assert reasons["big.md"] == "0.00191 MB, over the 0.000954 MB limit (--max-file-mb)"
    assert reasons["pipe.md"] == "not a regular file"


def test_reading_stops_at_the_size_limit(tmp_path):
    (tmp_path / "grew.md").write_text(
        "word " * 400, encoding="utf-8"
    )  # listed when small, then grew: still not read past the limit
    with pytest.warns(UserWarning, match="over the"):
        assert read_document(tmp_path / "grew.md", max_bytes=1000) is None
    assert read_document(tmp_path / "grew.md", max_bytes=2000) == "word " * 400


def test_index_leaves_out_what_it_may_not_read_and_says_so(tmp_path, embedder, make_docs, capsys, monkeypatch):
    from rag.cli import main

    docs, outside = make_docs(tmp_path / "docs"), tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\n\nThe database password is hunter2.\n", encoding="utf-8")
    (docs / "leak.md").symlink_to(outside / "secret.md")
    (docs / "linked").symlink_to(outside, target_is_directory=True)
    (docs / "big.md").write_text("# Big\n\n" + "hunter2 " * 200, encoding="utf-8")
    monkeypatch.setattr("rag.indexer.Embedder", lambda *args, **kwargs: embedder)  # the session's, loaded once
    main(["index", "--docs", str(docs), "--out", str(tmp_path / "idx"), "--max-file-mb", "0.001"])
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["files"] == 4 and summary["files_skipped"] == 3
    assert [line.split(":")[0] for line in summary["skipped"]] == ["big.md", "leak.md", "linked/"]
    assert "warning: skipped leak.md (a link to a file outside the folder" in out
    chunks = (tmp_path / "idx" / "chunks.jsonl").read_text(encoding="utf-8")
    assert "hunter2" not in chunks and "secret" not in chunks.lower()
