"""The Milvus store (`rag index --store milvus`): the dense vectors of an index in Milvus instead of a faiss file.

Milvus Lite (the default) is Milvus embedded in this process, its data in the index folder's milvus.db/, one process
at a time; `--uri` names a Milvus server or cluster instead, which many processes and machines share. Either way
the chunks, BM25 and manifest stay in the index folder (store.py), and the manifest names the collection, so
loading needs no flag. Search is inner product on unit vectors, as in faiss: FLAT is exact and returns faiss's
IndexFlatIP ranking (tests/test_milvus.py); HNSW and IVF-PQ take build_faiss's settings.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import uuid
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from dlshared.cli import UserError

from .store import MILVUS_LITE, IndexProblem, ivf_lists

MILVUS_TOKEN = "MILVUS_TOKEN"
"""The environment variable that holds a Milvus server's token ("user:password" or an API key): never saved."""


def milvus_index(index_type: str, n: int, dim: int) -> tuple[str, dict, dict]:
    """One of our index types as a Milvus index: (type, build params, search params), with build_faiss's settings."""
    if index_type == "hnsw":
        return "HNSW", {"M": 32, "efConstruction": 100}, {"ef": 128}
    if index_type == "ivfpq":
        nlist = ivf_lists(n)
        return "IVF_PQ", {"nlist": nlist, "m": dim // 4, "nbits": 8}, {"nprobe": min(nlist, 32)}
    return "FLAT", {}, {}  # exact: the same inner products as faiss's IndexFlatIP


class _LastError(logging.Handler):
    """Keeps what Milvus Lite logs when it cannot start (pymilvus then raises only "Open local milvus failed")."""

    error: BaseException | str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.error = record.exc_info[1] if record.exc_info else record.getMessage()


def connect_milvus(uri: str | None, folder: Path):
    """A MilvusClient for the server at `uri` (token from $MILVUS_TOKEN), or for Milvus Lite in `folder` when `uri`
    is None. What a server refuses is one UserError line; Lite files it cannot open are an IndexProblem."""
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    for name in ("pymilvus", "pymilvus.milvus_client"):  # their logged tracebacks become our one line
        logging.getLogger(name).setLevel(logging.CRITICAL)
    if uri is not None and (urlparse(uri).username or urlparse(uri).password):  # not echoed: it holds a password
        raise UserError(f"--uri: give credentials in ${MILVUS_TOKEN}, not in the URI (it is saved in manifest.json)")
    lite_log, caught = logging.getLogger("milvus_lite"), _LastError()
    lite_log.addHandler(caught)
    lite_log.propagate = False
    try:
        if uri is not None:
            return MilvusClient(uri, token=os.environ.get(MILVUS_TOKEN, ""))
        return MilvusClient(str(folder / MILVUS_LITE))
    except MilvusException as err:
        if uri is not None:
            raise UserError(f"Milvus server {uri}: {err.message}") from None
        if type(caught.error).__name__ == "DataDirLockedError":
            raise UserError(
                f"{folder / MILVUS_LITE}: another process has this Milvus Lite database open (Lite serves one "
                "process at a time; a Milvus server, --uri, serves many)"
            ) from None
        raise IndexProblem(f"Milvus Lite cannot open it ({caught.error or err.message})") from None
    finally:
        lite_log.removeHandler(caught)
        lite_log.propagate = True


def release_milvus_lite(folder: Path) -> None:
    """Stop this process's Milvus Lite server over `folder`'s database, if it runs one: the files are then complete
    and closed, so the folder can be renamed or replaced (a server kept running would serve the old files)."""
    if "milvus_lite" in sys.modules:  # otherwise this process never started one
        from milvus_lite import server_manager_instance

        server_manager_instance.release_server(str(Path(folder) / MILVUS_LITE))


def write_milvus(folder: Path, vectors: np.ndarray, index_type: str, uri: str | None) -> str:
    """Insert the vectors (row i = chunk i) into a new collection with the index `index_type` maps to, on the server
    at `uri` or in Milvus Lite in `folder`; returns the collection's name."""
    from pymilvus import DataType, MilvusClient
    from pymilvus.exceptions import MilvusException

    n, dim = vectors.shape
    kind, build, _ = milvus_index(index_type, n, dim)
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)  # the chunk's line in chunks.jsonl
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    params = MilvusClient.prepare_index_params()
    params.add_index("vector", index_type=kind, metric_type="IP", params=build)  # unit vectors: IP = cosine
    name = "chunks" if uri is None else f"rag_{uuid.uuid4().hex[:16]}"  # a server holds many indexes: a new name
    client = connect_milvus(uri, folder)
    try:
        client.create_collection(name, schema=schema, index_params=params)
        for start in range(0, n, 1000):  # gRPC messages of ~1.5 MB, far below the 64 MB limit
            rows = vectors[start : start + 1000]
            client.insert(name, [{"id": start + i, "vector": row} for i, row in enumerate(rows)])
        client.flush(name)  # sealed and counted before the manifest says the index is complete
    except MilvusException as err:
        if uri is not None:  # leave nothing half-written on the server
            with contextlib.suppress(MilvusException):
                client.drop_collection(name)
        raise UserError(f"{f'Milvus server {uri}' if uri else folder / MILVUS_LITE}: {err.message}") from None
    finally:
        client.close()
        release_milvus_lite(folder)
    return name


def drop_replaced_collection(manifest: dict) -> None:
    """After `--overwrite`, drop the server collection the replaced index used (Milvus Lite's went with its folder)."""
    from pymilvus.exceptions import MilvusException

    if manifest.get("store") != "milvus" or manifest.get("milvus_uri") is None:
        return
    try:
        client = connect_milvus(manifest["milvus_uri"], Path())
        client.drop_collection(manifest["milvus_collection"])
        client.close()
    except (UserError, MilvusException) as err:
        print(f"warning: the replaced collection {manifest['milvus_collection']} was not dropped ({err})")


class MilvusVectors:
    """The dense half of an index whose vectors live in Milvus: the collection its manifest names, loaded."""

    def __init__(self, folder: Path, manifest: dict):
        self.uri, self.collection = manifest.get("milvus_uri"), manifest["milvus_collection"]
        self.where = f"Milvus server {self.uri}" if self.uri else str(folder / MILVUS_LITE)
        _, _, params = milvus_index(manifest["index_type"], manifest["chunks"], manifest["dim"])
        self.search_params = {"metric_type": "IP", "params": params}
        self.client = connect_milvus(self.uri, folder)
        self.client.load_collection(self.collection)  # into memory: a collection that is not loaded cannot search
        self.ntotal = int(self.client.get_collection_stats(self.collection)["row_count"])

    def search(self, query_vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        from pymilvus.exceptions import MilvusException

        try:
            found = self.client.search(
                self.collection,
                [query_vector.tolist()],
                limit=k,
                search_params=self.search_params,
                output_fields=["id"],
            )
        except MilvusException as err:  # e.g. the server went away since the index was loaded
            raise UserError(f"{self.where}: {err.message}") from None
        return [(int(hit["id"]), float(hit["distance"])) for hit in found[0]]
