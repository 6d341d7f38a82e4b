"""Bad input from a user: every flag's bad values, flags that contradict each other, and folders that must not be
written into, each ending in one line on stderr (exit 2) with nothing created or changed."""

from __future__ import annotations

import json

import pytest

from dlshared.testing import assert_one_line_error, bad_flag_cases
from rag.cli import main
from rag.config import AskArgs, BenchArgs, DemoArgs, EvalArgs, IndexConfig

VERBS = {"index": IndexConfig, "ask": AskArgs, "eval": EvalArgs, "bench": BenchArgs, "demo": DemoArgs}
PREFIX = {"ask": ["ask", "how do I resume?"]}  # the question is positional: without it tyro complains about that
CASES = [(verb, flag, value) for verb, config in VERBS.items() for flag, value in bad_flag_cases(config)]
OTHER_CASES = [  # relations between flags, choices, and the question's length: (argv, what the line must say)
    (["index", "--chunk-tokens", "16", "--overlap-tokens", "16"], "--overlap-tokens 16: must be less than"),
    (["index", "--index-type", "annoy"], "annoy"),
    (["ask", "how?", "--mode", "fuzzy"], "fuzzy"),
    (["ask", "x" * 1001], "at most 1000"),
    (["eval", "--mode", "fuzzy"], "fuzzy"),
    (["bench", "--sizes", "5"], "--sizes 5: recall@10 needs at least 10"),
    (["bench", "--sizes", "100", "--index-types", "ivfpq"], "ivfpq needs at least 256"),
    (["bench", "--sizes", "1000", "--dim", "30", "--index-types", "ivfpq"], "multiple of 4"),
    (["bench", "--index-types", "annoy"], "annoy"),
    (["demo", "--port", "99999"], "--port 99999"),
]


def test_every_verb_has_its_numeric_flags_checked():
    flags = {(verb, flag) for verb, flag, _ in CASES}
    for verb, flag in [("index", "--chunk-tokens"), ("index", "--overlap-tokens"), ("index", "--max-file-mb")]:
        assert (verb, flag) in flags
    for verb, flag in [("ask", "--k"), ("ask", "--max-new-tokens"), ("demo", "--port"), ("demo", "--k")]:
        assert (verb, flag) in flags
    assert {flag for verb, flag in flags if verb == "bench"} == {"--sizes", "--queries", "--dim", "--seed"}


@pytest.mark.parametrize("verb, flag, value", CASES, ids=[f"{v}{f}={x}" for v, f, x in CASES])
def test_every_bad_flag_value_is_one_line_and_creates_nothing(verb, flag, value, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may appear here, ./runs included
    err = assert_one_line_error(main, [*PREFIX.get(verb, [verb]), flag, value], capsys)
    assert flag in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, message", OTHER_CASES, ids=[" ".join(a)[:40] for a, _ in OTHER_CASES])
def test_contradicting_flags_are_one_line_before_any_work(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert message in assert_one_line_error(main, argv, capsys)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def fast_models(monkeypatch, embedder):
    """`rag index` and `rag ask` through `main`, with the session's already loaded embedding model."""
    monkeypatch.setattr("rag.indexer.Embedder", lambda *args, **kwargs: embedder)
    monkeypatch.setattr("rag.retrieve.Embedder", lambda *args, **kwargs: embedder)
    monkeypatch.setattr("rag.embed.Embedder", lambda *args, **kwargs: embedder)


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_index_never_writes_into_a_folder_it_did_not_create(tmp_path, docs_dir, capsys):
    mine = tmp_path / "mine"  # the reported loss: a user's folder that happens to hold bm25/ and manifest.json
    (mine / "bm25").mkdir(parents=True)
    (mine / "bm25" / "notes.txt").write_text("keep me", encoding="utf-8")
    (mine / "manifest.json").write_text('{"mine": true}', encoding="utf-8")
    before = snapshot(mine)
    for out, extra, message in [
        (mine, [], "is not empty"),
        (mine, ["--overwrite"], "was not written by this tool"),
        (docs_dir, ["--overwrite"], "which is being read"),
        (docs_dir.parent, ["--overwrite"], "which is being read"),
    ]:
        argv = ["index", "--docs", str(docs_dir), "--out", str(out), *extra]
        assert message in assert_one_line_error(main, argv, capsys)
    assert snapshot(mine) == before and sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_index_replaces_its_own_index_only_with_overwrite(tmp_path, make_docs, fast_models, capsys):
    docs = make_docs(tmp_path / "docs")
    out = tmp_path / "idx"
    args = ["index", "--docs", str(docs), "--out", str(out), "--chunk-tokens", "40", "--overlap-tokens", "8"]
    main(args)
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["files_embedded"] == 4 and (out / ".written-by-capstones").is_file()
    before = snapshot(out)
    assert "add --overwrite" in assert_one_line_error(main, args, capsys)
    assert snapshot(out) == before
    (docs / "notes" / "zebra.md").write_text("# Zebras\n\nZebras sleep standing up.\n", encoding="utf-8")
    main([*args, "--overwrite"])
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (second["files_embedded"], second["files_reused"]) == (1, 3)  # its own vectors, reused
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs", "idx"]  # no staging folder left behind


def test_a_failed_index_leaves_the_old_one_whole(tmp_path, make_docs, fast_models, capsys, monkeypatch):
    docs = make_docs(tmp_path / "docs")
    out = tmp_path / "idx"
    main(["index", "--docs", str(docs), "--out", str(out)])
    before = snapshot(out)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("rag.indexer.save_index", crash)
    with pytest.raises(OSError, match="disk full"):
        main(["index", "--docs", str(docs), "--out", str(out), "--overwrite", "--chunk-tokens", "40"])
    assert snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["docs", "idx"]
