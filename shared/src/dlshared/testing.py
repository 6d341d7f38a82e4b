"""pytest plugin shared by every project: offline by construction, plus a 2-process DDP runner.

Enable it with `pytest_plugins = ("dlshared.testing",)` in the root conftest.py. Importing this module sets the
offline variables before any test imports huggingface_hub or gradio, and every test runs with non-loopback
connections (and DNS look-ups of other hosts) refused. Subprocesses are not covered: give them the same env.
"""

from __future__ import annotations

import ipaddress
import multiprocessing as mp
import os
import queue
import socket
import time
import traceback
from collections.abc import Callable
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


def _guarded_connect(original: Callable) -> Callable:
    def connect(self: socket.socket, address: Any, *args: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            raise NetworkBlocked(f"tests are offline: connection to {address!r} refused")
        return original(self, address, *args)

    return connect


def _guarded_getaddrinfo(original: Callable) -> Callable:
    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_loopback(host):
            raise NetworkBlocked(f"tests are offline: name lookup of {host!r} refused")
        return original(host, *args, **kwargs)

    return getaddrinfo


@pytest.fixture(autouse=True, scope="session")
def block_network() -> Any:
    """Refuse every non-loopback connection for the whole session."""
    saved = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo
    socket.socket.connect = _guarded_connect(saved[0])
    socket.socket.connect_ex = _guarded_connect(saved[1])
    socket.getaddrinfo = _guarded_getaddrinfo(saved[2])
    yield
    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = saved


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


def run_distributed(fn: Callable[..., Any], *args: Any, nprocs: int = 2, timeout: float = 600) -> list[Any]:
    """Run `fn(*args)` in `nprocs` fresh processes forming a gloo process group on CPU; return each rank's result.

    The processes see the variables torchrun would set (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT), so code
    that reads them, Accelerate included, behaves as under `torchrun --nproc-per-node N`. `fn` must be importable
    (defined at module level in a package), since the processes are spawned, not forked.
    """
    ctx = mp.get_context("spawn")
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
                dead = [
                    r for r, proc in enumerate(procs) if r not in outputs and proc.exitcode not in (None, 0)
                ]
                if dead:
                    raise RuntimeError(
                        f"rank {dead[0]} died with exit code {procs[dead[0]].exitcode}"
                    ) from None
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
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1",
    )  # fmt: skip
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


def in_process_group(fn: Callable[..., Any], *args: Any) -> Any:
    """Join the gloo group `run_distributed` prepared, then call `fn(*args)`: for code that expects a process
    group to exist already (as it does under Accelerate or torchrun), e.g. `run_distributed(in_process_group, f)`."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method="env://")
    return fn(*args)
