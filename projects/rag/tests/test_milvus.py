"""`--store milvus`: Milvus Lite returns what faiss returns (the bundled questions, synthetic vectors), `--uri` goes
to MilvusClient (a fake server here), and bad addresses or a damaged Milvus Lite database are one line.

Milvus Lite (pymilvus's embedded Milvus) runs in this process: a gRPC server on 127.0.0.1, which the offline guard
allows. It costs about a second to import and start, so each fixture builds its index once per module."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import shutil

import numpy as np
import pytest
from pymilvus import MilvusClient

from dlshared.testing import assert_one_line_error
from rag.bench import synthetic_vectors
from rag.cli import main
from rag.config import IndexConfig
from rag.evaluate import BUNDLED_QUESTIONS, evaluate, load_questions
from rag.indexer import build_index, default_docs
from rag.milvus import MilvusVectors, write_milvus
from rag.retrieve import Retriever
from rag.store import MILVUS_LITE, LoadedIndex, build_faiss

SOURCE_LINES = 30
"""The first lines of each file the bundled questions are about: ~120 chunks, a few seconds to embed."""


@pytest.fixture(scope="module")
def both_stores(tmp_path_factory, embedder):
    """The bundled questions' corpus indexed with faiss, then that index switched to Milvus Lite (`--overwrite`)."""
    root = default_docs()
    if not (root / "projects").is_dir():
        pytest.skip("the bundled questions are about the full repository, not a fork")
    tmp = tmp_path_factory.mktemp("stores")
    for name in {row["source"] for row in load_questions(BUNDLED_QUESTIONS)}:
        lines = (root / name).read_text(encoding="utf-8").splitlines(keepends=True)
        (tmp / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / "docs" / name).write_text("".join(lines[:SOURCE_LINES]), encoding="utf-8")
    cfg = IndexConfig(docs=tmp / "docs", out=tmp / "faiss")
    build_index(cfg, embedder)
    shutil.copytree(tmp / "faiss", tmp / "milvus")
    switched = build_index(dataclasses.replace(cfg, out=tmp / "milvus", store="milvus", overwrite=True), embedder)
    return tmp / "faiss", tmp / "milvus", switched


def test_milvus_lite_gives_the_faiss_recall_on_the_bundled_questions(both_stores, embedder):
    faiss_dir, milvus_dir, switched = both_stores
    assert switched["store"] == "milvus" and switched["files_embedded"] == 0  # a new store, the same vectors
    assert (milvus_dir / MILVUS_LITE).is_dir() and not (milvus_dir / "index.faiss").exists()
    questions = load_questions(BUNDLED_QUESTIONS)
    on_faiss, on_milvus = Retriever(faiss_dir, embedder), Retriever(milvus_dir, embedder)  # no flag: the manifest
    assert on_milvus.index.milvus is not None and on_milvus.index.faiss is None
    for mode in ("dense", "hybrid"):
        expected, got = evaluate(on_faiss, questions, mode), evaluate(on_milvus, questions, mode)
        for metric in ("recall@1", "recall@5", "recall@10", "mrr"):
            assert got[metric] == pytest.approx(expected[metric], abs=1e-6), (mode, metric)
        assert expected["recall@5"] > 0.3  # a search that finds its sources: equal figures say something
    query = embedder.encode([questions[0]["question"]])[0]
    faiss_hits, milvus_hits = on_faiss.index.dense_search(query, 10), on_milvus.index.dense_search(query, 10)
    assert [i for i, _ in milvus_hits] == [i for i, _ in faiss_hits]
    np.testing.assert_allclose([s for _, s in milvus_hits], [s for _, s in faiss_hits], atol=1e-6)


def test_milvus_flat_is_exact_and_hnsw_keeps_recall_on_synthetic_vectors(tmp_path):
    rng = np.random.default_rng(0)
    vectors = synthetic_vectors(3000, 64, rng, centres=64)
    queries = vectors[rng.integers(0, len(vectors), 50)] + 0.05 * rng.standard_normal((50, 64), dtype=np.float32)
    _, truth = build_faiss(vectors, "flat").search(queries, 10)
    for index_type, least_recall in (("flat", 1.0), ("hnsw", 0.95)):
        folder = tmp_path / index_type
        folder.mkdir()
        collection = write_milvus(folder, vectors, index_type, uri=None)
        manifest = {"milvus_collection": collection, "index_type": index_type, "chunks": 3000, "dim": 64}
        store = MilvusVectors(folder, manifest)
        assert store.ntotal == 3000
        found = [[i for i, _ in store.search(q, 10)] for q in queries]
        recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
        assert recall >= least_recall, (index_type, recall)


class FakeServer(MilvusClient):
    """A Milvus server in a dict: records how it was reached, searches by numpy inner product."""

    collections: dict = {}
    connections: list = []

    def __init__(self, uri: str = "", token: str = "", **kwargs):
        self.connections.append((uri, token))

    def create_collection(self, name, schema=None, index_params=None, **kwargs):
        assert [p.to_dict()["metric_type"] for p in index_params] == ["IP"]
        self.collections[name] = {}

    def insert(self, name, rows, **kwargs):
        self.collections[name].update({row["id"]: np.asarray(row["vector"]) for row in rows})

    def search(self, name, data, limit=10, **kwargs):
        ids = list(self.collections[name])
        scores = np.stack([self.collections[name][i] for i in ids]) @ np.asarray(data[0])
        return [[{"id": ids[j], "distance": float(scores[j])} for j in np.argsort(-scores)[:limit]]]

    def get_collection_stats(self, name, **kwargs):
        return {"row_count": len(self.collections[name])}

    def drop_collection(self, name, **kwargs):
        del self.collections[name]

    def flush(self, *args, **kwargs): ...
    def load_collection(self, *args, **kwargs): ...
    def close(self): ...


@pytest.fixture
def fast_models(monkeypatch, embedder):
    monkeypatch.setattr("rag.indexer.Embedder", lambda *args, **kwargs: embedder)
    monkeypatch.setattr("rag.retrieve.Embedder", lambda *args, **kwargs: embedder)
    monkeypatch.setattr("rag.embed.Embedder", lambda *args, **kwargs: embedder)


def test_uri_goes_to_milvus_client_and_the_index_finds_it_again(tmp_path, docs_dir, fast_models, monkeypatch, capsys):
    monkeypatch.setattr("pymilvus.MilvusClient", FakeServer)
    monkeypatch.setattr(FakeServer, "collections", {})
    monkeypatch.setattr(FakeServer, "connections", [])
    monkeypatch.setenv("MILVUS_TOKEN", "root:s3cret")
    out, uri = tmp_path / "idx", "http://milvus.example:19530"
    argv = ["index", "--docs", str(docs_dir), "--out", str(out), "--store", "milvus", "--uri", uri]
    main(argv)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["store"] == "milvus"
    assert set(FakeServer.connections) == {(uri, "root:s3cret")}
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["milvus_uri"] == uri and "s3cret" not in (out / "manifest.json").read_text(encoding="utf-8")
    assert list(FakeServer.collections) == [manifest["milvus_collection"]]
    assert not (out / "index.faiss").exists() and not (out / MILVUS_LITE).exists()
    FakeServer.connections.clear()
    main(["ask", "zebra stripe pattern", "--index", str(out)])  # no --uri: the manifest says where
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["sources"][0]["file"] == "notes/zebra.md"
    assert FakeServer.connections == [(uri, "root:s3cret")]
    main([*argv, "--overwrite"])  # a new collection; the replaced one is dropped from the server
    assert list(FakeServer.collections) == [json.loads((out / "manifest.json").read_text())["milvus_collection"]]
    assert list(FakeServer.collections) != [manifest["milvus_collection"]]


BAD_URIS = [  # (extra flags, what the line must say); 127.0.0.1:1 is loopback where nothing listens
    (["--uri", "http://localhost:19530"], "add --store milvus"),
    (["--store", "milvus", "--uri", "ftp://milvus.example"], "Milvus server ftp://milvus.example: uri: ftp://milvus"),
    (["--store", "milvus", "--uri", "http://127.0.0.1:1"], "Milvus server http://127.0.0.1:1: Fail connecting"),
    (["--store", "milvus", "--uri", "http://root:s3cret@127.0.0.1:1"], "credentials in $MILVUS_TOKEN"),
    (["--store", "milvus", "--index-type", "ivfpq"], "Milvus Lite has no IVF-PQ"),
]


@pytest.mark.parametrize("flags, message", BAD_URIS, ids=[" ".join(f)[:40] for f, _ in BAD_URIS])
def test_a_bad_uri_is_one_line_and_creates_nothing(flags, message, tmp_path, docs_dir, fast_models, capsys):
    err = assert_one_line_error(
        main, ["index", "--docs", str(docs_dir), "--out", str(tmp_path / "idx"), *flags], capsys
    )
    assert message in err and "s3cret" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def lite_index(docs_dir, embedder, tmp_path_factory):
    out = tmp_path_factory.mktemp("lite") / "idx"
    build_index(IndexConfig(docs=docs_dir, out=out, chunk_tokens=40, overlap_tokens=8, store="milvus"), embedder)
    return out


def test_a_damaged_milvus_lite_index_is_one_line_and_ask_docs_rebuilds_it(lite_index, docs_dir, tmp_path, capsys):
    copy = tmp_path / "idx"
    shutil.copytree(lite_index, copy)
    with open(
        copy / MILVUS_LITE / "LOCK", "w", encoding="utf-8"
    ) as lock:  # as another process holding the database open would
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        err = assert_one_line_error(main, ["ask", "how?", "--index", str(copy)], capsys)
        assert "another process has this Milvus Lite database open" in err
    shutil.rmtree(copy / MILVUS_LITE)
    err = assert_one_line_error(main, ["eval", "--index", str(copy)], capsys)
    assert f"{copy / MILVUS_LITE}: missing" in err and "--store milvus --overwrite" in err


def test_ask_docs_rebuilds_a_broken_milvus_index_as_milvus(lite_index, docs_dir, tmp_path, fast_models, capsys):
    copy = tmp_path / "idx"
    shutil.copytree(lite_index, copy)
    shutil.rmtree(copy / MILVUS_LITE)
    main(["ask", "How do I continue training after a crash?", "--index", str(copy), "--docs", str(docs_dir)])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["sources"][0]["file"] == "guide/training.md"
    assert LoadedIndex(copy).milvus is not None  # still Milvus Lite, whole again
