"""pytest plugin shared by every project: offline by construction, plus a 2-process DDP runner.

Enable it with `pytest_plugins = ("dlshared.testing",)` in the root conftest.py. Importing this module sets the
offline variables before any test imports huggingface_hub or gradio, and every test runs with non-loopback
connections (and DNS look-ups of other hosts) refused. Subprocesses are not covered: give them the same env.
"""

from __future__ import annotations

import contextlib
import ipaddress
import multiprocessing as mp
import os
import queue
import socket
import sys
import time
import traceback
from collections.abc import Callable
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


FORKSERVER_PRELOAD = ["torch", "torch.distributed", "accelerate", "dlshared.training"]


def run_distributed(fn: Callable[..., Any], *args: Any, nprocs: int = 2, timeout: float = 600) -> list[Any]:
    """Run `fn(*args)` in `nprocs` fresh processes forming a gloo process group on CPU; return each rank's result.

    The processes see the variables torchrun would set (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT), so code
    that reads them, Accelerate included, behaves as under `torchrun --nproc-per-node N`. `fn` must be importable
    (defined at module level in a package), since the processes start fresh, not as copies of this one.

    They are forked from a fork server that imported torch and Accelerate once (and never ran an op, so no
    OpenMP threads exist to be lost in the fork): each call saves every rank's seconds of importing them.
    """
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(FORKSERVER_PRELOAD)  # read when the server starts: the first call of the session
    results = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(target=_worker, args=(rank, nprocs, port, fn, args, results), daemon=False)
        for rank in range(nprocs)
    ]
    for p in procs:
        p.start()
    outputs: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(outputs) < nprocs:
            try:
                rank, ok, value = results.get(timeout=1.0)
            except queue.Empty:
                # A rank killed outright (segfault, OOM) never reports: notice it now rather than at the deadline.
                dead = [r for r, proc in enumerate(procs) if r not in outputs and proc.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"rank {dead[0]} died with exit code {procs[dead[0]].exitcode}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"run_distributed: no result after {timeout:.0f}s") from None
                continue
            if not ok:
                raise RuntimeError(f"rank {rank} failed:\n{value}")
            outputs[rank] = value
    finally:
        for p in procs:
            p.join(timeout=30 if len(outputs) == nprocs else 1)  # after a failure the others may wait forever
            if p.is_alive():
                p.kill()
    return [outputs[r] for r in range(nprocs)]


def _worker(rank: int, world: int, port: int, fn: Callable, args: tuple, results: Any) -> None:
    os.environ.update(OFFLINE_ENV)
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        OMP_NUM_THREADS="1",
    )
    install_network_guard()  # the spawned process is offline too
    try:
        import torch

        torch.set_num_threads(1)  # as torchrun does: one core per process
        value = fn(*args)
        results.put((rank, True, value))
    except BaseException:  # report any failure to the parent instead of hanging it
        results.put((rank, False, traceback.format_exc()))
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def allreduce_selftest(value: float) -> tuple[int, int, float]:
    """Join the group `run_distributed` prepared and all-reduce `value * (rank + 1)`: a check of the plumbing.

    It lives here, not in a test file, because spawned processes can only run functions they can import.
    """
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method="env://")
    total = torch.tensor([value * (dist.get_rank() + 1)])
    dist.all_reduce(total)
    return dist.get_rank(), dist.get_world_size(), total.item()


def network_selftest() -> str:
    """What a connection to a public address does in this process: "blocked" where the guard is on."""
    try:
        socket.create_connection(("8.8.8.8", 53), timeout=1)
    except NetworkBlocked:
        return "blocked"
    except OSError as err:
        return f"other OSError: {err}"
    return "connected"


def in_process_group(fn: Callable[..., Any], *args: Any) -> Any:
    """Join the gloo group `run_distributed` prepared, then call `fn(*args)`: for code that expects a process
    group to exist already (as it does under Accelerate or torchrun), e.g. `run_distributed(in_process_group, f)`."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method="env://")
    return fn(*args)


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


def resume_rng_selftest(out: str | os.PathLike) -> tuple[float, float]:
    """Under `run_distributed`: each rank seeds its own stream, checkpoints through `dlshared.training`, draws a
    number; then resumes and draws again. Equal pairs mean every rank got its own RNG state back."""
    import dataclasses

    import torch

    from .training import start_run

    @dataclasses.dataclass
    class Options:
        out: Path
        name: str = "ddp"
        resume: bool = False
        overwrite: bool = False
        device: str = "cpu"
        mixed_precision: str = "no"
        progress: bool = False

    run = start_run("proj", Options(Path(out)))
    rank = run.accelerator.process_index
    torch.manual_seed(100 + rank)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run.checkpoint(model, optimizer, step=1, per_rank={"position": 10 + rank})
    after_save = torch.rand(()).item()
    run.finish({}, "done")
    reset_accelerate()
    resumed = start_run("proj", Options(Path(out), resume=True))
    state = resumed.resume(model, optimizer)
    after_resume = torch.rand(()).item()
    resumed.finish({}, "done")
    if state["per_rank"] != {"position": 10 + rank}:
        raise AssertionError(f"rank {rank} got {state['per_rank']}")
    return after_save, after_resume


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants at once; wait until the descendants are gone (the process itself
    is left for its parent to reap: Popen.wait then reads its exit status)."""
    import psutil

    try:
        root = psutil.Process(pid)
        descendants = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for process in [root, *descendants]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(descendants, timeout=30)


def torchrun(package: str, args: list[str], nprocs: int = 2) -> Any:
    """`python -m torch.distributed.run --nproc-per-node N -m <package>.cli ARGS` on CPU, offline, in its own
    process group (so that `kill_when` reaches the launcher and every rank); returns the Popen."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nprocs)]
    env = {**os.environ, **OFFLINE_ENV, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [*command, "-m", f"{package}.cli", *args],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def kill_when(proc: Any, ready: Callable[[], bool], timeout: float = 300) -> None:
    """SIGKILL `proc` (a `torchrun` job) and every process under it as soon as `ready()` is true, as a crash or a
    pre-empted machine would; fail if it ends first or never gets there. torchrun starts each rank in a session of
    its own, so killing the launcher's process group would leave the ranks training on: the tree is killed."""
    import signal

    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if ready():
                _kill_tree(proc.pid)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            _kill_tree(proc.pid)
        proc.wait()
    stderr = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    assert proc.returncode == -signal.SIGKILL, f"the job ended before it could be killed:\n{stderr}"
