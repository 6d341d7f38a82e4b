"""Tests that start processes: a 2-process gloo group on CPU (`run_distributed`), a real `torchrun` job, and
killing it mid-run as a crash would (`kill_when`), for the resume tests. Every process is offline, as the tests are
(dlshared.testing's guard and variables)."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import socket
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .testing import OFFLINE_ENV, NetworkBlocked, free_port, install_network_guard, reset_accelerate

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
