"""pytest plugin shared by every project: offline by construction, plus the helpers its tests share (the ones that
start processes are in dlshared.processes).

Enable it with `pytest_plugins = ("dlshared.testing",)` in the root conftest.py. Importing this module sets the
offline variables before any test imports huggingface_hub or gradio, and every test runs with non-loopback
connections (and DNS look-ups of other hosts) refused. Subprocesses are not covered: give them the same env.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "DO_NOT_TRACK": "1",
}
os.environ.update(OFFLINE_ENV)

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


class NetworkBlocked(ConnectionError):
    """Raised when a test tries to reach a host other than this machine.

    An OSError, as on a machine without network, so code that handles being offline takes its real path.
    """


def _is_loopback(host: Any) -> bool:
    if host is None:
        return True
    host = host.decode() if isinstance(host, bytes) else str(host)
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


_guard = {"installed": False, "on": False}
_ADDRESS_EVENTS = ("socket.connect", "socket.sendto", "socket.sendmsg")  # TCP connects and UDP datagrams
_NAME_EVENTS = ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr")


def _audit(event: str, args: tuple) -> None:
    if not _guard["on"]:
        return
    if event in _ADDRESS_EVENTS:
        sock, address = args[0], args[1]
        inet = sock.family in (socket.AF_INET, socket.AF_INET6)
        if inet and isinstance(address, tuple) and address and not _is_loopback(address[0]):
            raise NetworkBlocked(f"tests are offline: {event.removeprefix('socket.')} to {address!r} refused")
    elif event in _NAME_EVENTS and not _is_loopback(args[0]):
        raise NetworkBlocked(f"tests are offline: name lookup of {args[0]!r} refused")


def install_network_guard() -> None:
    """Refuse every non-loopback connection, datagram and name lookup in this process from now on.

    An audit hook (PEP 578) sees the C-level socket calls, so code that uses `_socket` directly, UDP, and
    libraries with their own socket subclasses are all covered; it stays for the life of the process.
    """
    if not _guard["installed"]:
        sys.addaudithook(_audit)
        _guard["installed"] = True
    _guard["on"] = True


@pytest.fixture(autouse=True, scope="session")
def block_network() -> Any:
    """Refuse every non-loopback connection for the whole session."""
    install_network_guard()
    yield
    _guard["on"] = False


@pytest.fixture(autouse=True, scope="session")
def no_writes_into_runs(request: pytest.FixtureRequest) -> Any:
    """Tests write into temporary folders, never into the checkout's own runs/ (a user's trained models)."""
    runs = Path(request.config.rootpath) / "runs"
    before = {str(p) for p in runs.rglob("*")} if runs.is_dir() else set()
    yield
    added = sorted({str(p) for p in runs.rglob("*")} - before) if runs.is_dir() else []
    if added:
        pytest.fail(f"tests wrote into {runs}: {added[:5]}", pytrace=False)


def reset_accelerate() -> None:
    """Forget Accelerate's process-wide settings (precision, accumulation) so that the next `Accelerator(...)` in
    this process may differ: for tests that train twice in one process. The process group is kept.

    Accelerate keeps that state in singletons on purpose (one job per process); resetting it uses a private API,
    which is why it lives here, in the test plugin, and not in any training loop.
    """
    if "accelerate.state" not in sys.modules:  # nothing to forget; do not pay for the import
        return
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()


@pytest.fixture(autouse=True)
def fresh_accelerate_state() -> Any:
    """Every test starts without a previous test's Accelerate settings."""
    reset_accelerate()
    yield


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(fixturedef: Any, request: Any) -> None:
    """Module- and session-scoped fixtures (a run trained once and shared) are set up before the autouse fixture
    above runs for the test that needs them: they get a fresh Accelerate state too, whatever ran before."""
    if fixturedef.scope != "function":
        reset_accelerate()


def bad_flag_cases(config_type: type) -> list[tuple[str, str]]:
    """(flag, value) pairs a CLI must refuse for `config_type`: every declared Check's bad examples, and a word
    where a number goes. For table-driven tests: each case must end in one line on stderr and exit code 2."""
    import dataclasses
    import typing

    from .cli import field_checks

    full_hints = typing.get_type_hints(config_type, include_extras=True)

    def flag(name: str) -> str:  # the flag tyro shows: the field's name, or the one tyro.conf.arg(name=...) gives
        renamed = [getattr(m, "name", None) for m in getattr(full_hints[name], "__metadata__", ())]
        return "--" + next((n for n in renamed if isinstance(n, str)), name).replace("_", "-")

    cases = []
    for name, check in field_checks(config_type).items():
        cases += [(flag(name), str(value)) for value in check.bad_examples]
    hints = typing.get_type_hints(config_type)
    for field in dataclasses.fields(config_type):
        kinds = set(typing.get_args(hints[field.name])) - {type(None)} or {hints[field.name]}
        if kinds <= {int, float}:
            cases.append((flag(field.name), "many"))
    return cases


def assert_one_line_error(main: Callable[[list[str]], Any], argv: list[str], capsys: Any) -> str:
    """Run a CLI's `main(argv)`; assert it exits with code 2 and one line on stderr, no traceback; return the line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2, f"{argv}: exit code {exit_info.value.code}, stderr: {err[-500:]}"
    assert len(err.splitlines()) == 1 and "Traceback" not in err, f"{argv}: not one line:\n{err[-2000:]}"
    return err


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeHfApi:
    """huggingface_hub.HfApi's two calls a push makes (dlshared.hub.push_folder), recorded in `calls` instead of
    sent: ("create_repo", repo_id, kwargs) and ("upload_folder", repo_id, folder, its file names, kwargs)."""

    def __init__(self, calls: list, token: str | None = "fake-token"):
        self.calls, self.token = calls, token

    def create_repo(self, repo_id: str, **kwargs: Any) -> None:
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, *, repo_id: str, folder_path: Any, **kwargs: Any) -> Any:
        files = sorted(p.name for p in Path(folder_path).iterdir())
        self.calls.append(("upload_folder", repo_id, Path(folder_path), files, kwargs))
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/0"})()


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> list:
    """The Hub replaced by FakeHfApi for the test (dlshared.hub imports HfApi when a push happens); returns the
    list its calls are recorded in."""
    import huggingface_hub

    calls: list = []
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda: FakeHfApi(calls))
    return calls


@contextlib.contextmanager
def served_demo(demo: Any) -> Iterator[Any]:
    """Serve a gradio Blocks on a free loopback port (dlshared.demo.launch, as `<project> demo` does) and yield a
    gradio_client Client on it; the server is closed afterwards, whatever the test did."""
    from gradio_client import Client

    from .demo import launch

    url = launch(demo, port=free_port(), block=False)
    try:
        assert url.startswith("http://127.0.0.1:"), url  # the demos bind loopback unless told otherwise
        yield Client(url, verbose=False)
    finally:
        demo.close()


def assert_output_folder_guarded(main: Callable, argv: list[str], sources: list, tmp_path: Path, capsys: Any) -> None:
    """What every verb that writes a folder must do, for `main([*argv, "--out", OUT, ...])`: refuse a non-empty
    folder it did not write (with --overwrite too) and any OUT that is, or holds, one of the `sources` it reads;
    the user's files stay as they were."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me", encoding="utf-8")
    cases = [(mine, [], "is not empty"), (mine, ["--overwrite"], "was not written by this tool")]
    for source in map(Path, sources):
        cases += [
            (source, ["--overwrite"], "which is being read"),
            (source.parent, ["--overwrite"], "which is being read"),
        ]
    for out, overwrite, message in cases:
        err = assert_one_line_error(main, [*argv, "--out", str(out), *overwrite], capsys)
        assert message in err, (out, overwrite, err)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert all(source.exists() for source in map(Path, sources))


def assert_damaged_run_refused(
    main: Callable, verb: str, run_dir: Any, damage: Callable[[Path], Any], named: str, tmp_path: Path, capsys: Any
) -> None:
    """`main([VERB, "--ckpt", COPY])` on a copy of `run_dir` that `damage(COPY)` spoiled: one line on stderr naming
    COPY/`named`, exit code 2, and nothing written (an export is pointed at a fresh --out)."""
    import shutil

    run = Path(shutil.copytree(run_dir, tmp_path / "run"))
    damage(run)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    out = ["--out", str(tmp_path / "export")] if verb == "export" else []
    err = assert_one_line_error(main, [verb, "--ckpt", str(run), *out], capsys)
    assert str(run / named) in err, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written
