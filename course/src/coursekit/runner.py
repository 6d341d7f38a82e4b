"""Running a lesson's blocks, each lesson file in a process of its own, and collecting what each block printed.

Why a process per file: a lesson may change process-wide state on purpose (warning filters, `torch.set_num_threads`,
`torch.use_deterministic_algorithms`, the default dtype, grad mode, `torch.backends` flags, Accelerate's singletons)
and a lesson that forgets to undo it must not change what the next lesson prints. Restoring a list of known
settings would miss the ones nobody listed; a process that ends takes all of it with it.

Why forked from a server: starting Python and importing torch, torchvision, Lightning and the capstones costs about
10 s a file, ten minutes over the 60 lesson files. The server (`coursekit.lessonserver`) imports them once and runs
nothing else; each lesson file runs in a fork of it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import select
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .lessons import python_blocks
from .outputs import output_diff, output_matches, refreshed_output

LESSON_THREADS = 2
"""Threads a lesson starts with, whatever the machine has: the course machine's 2 cores. Lessons that time things pin
their own (mostly 1)."""


@dataclass
class BlockRun:
    line: int
    """1-based line of the block's opening fence."""
    stdout: str
    error: str | None = None
    """The traceback if the block raised; the blocks after it did not run."""


def run_blocks(path: Path, workdir: Path) -> list[BlockRun]:
    """Run the python blocks of `path` in order, in one namespace, in this process, from `workdir`; a `gpu` block
    is left out without CUDA, a `cpu` block with it. Stops at the first block that raises."""
    import matplotlib

    matplotlib.use("Agg")  # lessons plot to files, never to a window
    import torch

    os.chdir(workdir)  # files a lesson writes land in a temporary folder
    Path("figures").mkdir(exist_ok=True)  # where blocks save the pictures the lesson embeds
    torch.manual_seed(0)
    torch.set_num_threads(LESSON_THREADS)  # a reduction split over 8 threads sums in another order than over 2
    namespace = {"__name__": "__lesson__"}
    runs = []
    for block in python_blocks(path.read_text(encoding="utf-8")):
        if (block.needs_gpu and not torch.cuda.is_available()) or (block.cpu_only and torch.cuda.is_available()):
            continue
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(block.code, f"{path.name}:{block.line}", "exec"), namespace)
        except BaseException:  # SystemExit and KeyboardInterrupt from a lesson are failures too
            runs.append(BlockRun(block.line, out.getvalue(), traceback.format_exc()))
            break
        runs.append(BlockRun(block.line, out.getvalue()))
    return runs


class LessonDied(RuntimeError):
    """The lesson's process ended without a result (a crash, os._exit): the server is fine."""


class LessonServer:
    """The parent's end of `coursekit.lessonserver`: started on first use, one lesson at a time."""

    def __init__(self) -> None:
        command = [sys.executable, "-m", "coursekit.lessonserver"]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.buffer = b""
        self.child: int | None = None  # the lesson's process while one runs
        if self.read_line(timeout=300) != "ready":
            raise RuntimeError("the lesson server did not start")

    def read_line(self, timeout: float) -> str:
        """One reply line; os.read on the raw pipe, so select never waits on data already in a buffer."""
        fd = self.process.stdout.fileno()
        while b"\n" not in self.buffer:
            if not select.select([fd], [], [], timeout)[0]:
                raise TimeoutError
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"the lesson server exited (code {self.process.wait()})")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def run(self, path: Path, workdir: Path, timeout: float) -> list[BlockRun]:
        with tempfile.TemporaryDirectory() as folder:
            result = Path(folder) / "runs.pickle"
            request = {"path": str(path), "workdir": str(workdir), "result": str(result)}
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
            self.child = json.loads(self.read_line(timeout=60))["pid"]
            try:
                code = json.loads(self.read_line(timeout))["exit"]
            except TimeoutError:
                raise TimeoutError(f"{path.name}: no result after {timeout:.0f} s") from None
            self.child = None
            if not result.exists():
                raise LessonDied(f"{path.name}: the lesson's process died (exit code {code})")
            return pickle.loads(result.read_bytes())

    def discard(self) -> None:
        """After a timeout or an interrupt, replies may still be on their way: end the lesson and the server."""
        for pid in (self.child, self.process.pid):
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.process.wait()

    def close(self) -> None:
        self.process.stdin.close()  # the server's loop ends at end of input
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:  # an idle server holds nothing worth an orderly exit (seconds with torch)
            self.process.kill()
            self.process.wait()


class LessonPool:
    """Several lesson servers, each running one file at a time: `submit` every file at once and read the results
    in order while the next files already run. Lessons pin their thread counts, so two of them share a 2-core
    machine's cores without slowing each other, and the course's test time halves."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.local = threading.local()  # each pool thread talks to a server of its own
        self.servers: list[LessonServer] = []
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lesson")

    def _run(self, path: Path, workdir: Path, timeout: float) -> list[BlockRun]:
        server = getattr(self.local, "server", None)
        if server is None or server.process.poll() is not None:
            server = self.local.server = LessonServer()
            self.servers.append(server)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            return server.run(Path(path).resolve(), workdir.resolve(), timeout)
        except LessonDied:
            raise
        except BaseException:  # out of step with its server: the next file gets a fresh one
            server.discard()
            self.local.server = None
            raise

    def submit(self, path: Path, workdir: Path, timeout: float = 540) -> Future:
        """A future of `path`'s block runs, run from `workdir` (created)."""
        return self.executor.submit(self._run, path, workdir, timeout)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        for server in self.servers:
            if server.child is not None:  # a lesson still running (an interrupted session): end it
                server.discard()
            else:
                server.close()


def check_lesson(path: Path, workdir: Path, pool: LessonPool | None = None) -> list[str]:
    """Run `path` in a process of its own (forked from one of `pool`'s servers; without a pool, from a server
    started for this call) and compare: `lesson_failures`."""
    own = pool is None
    pool = LessonPool(workers=1) if own else pool
    try:
        return lesson_failures(path, pool.submit(path, workdir).result())
    finally:
        if own:
            pool.close()


def lesson_failures(path: Path, runs: list[BlockRun]) -> list[str]:
    """One message per failure of a lesson's block runs: a block that raised (the rest of the file did not run),
    or a block whose output differs from the text block under it (file, line, unified diff)."""
    expected = {block.line: block for block in python_blocks(path.read_text(encoding="utf-8"))}
    failures = []
    for run in runs:
        if run.error is not None:
            failures.append(f"{path.name}, block at line {run.line} failed:\n{run.error}")
            break
        block = expected[run.line]
        if block.expected is not None and not output_matches(block.expected, run.stdout):
            diff = output_diff(block.expected, run.stdout, f"{path.name}:{block.line}")
            failures.append(
                f"{path.name}, block at line {block.line}: output differs from line {block.expected_line}\n{diff}"
            )
    return failures


def record_outputs(path: Path, runs: list[BlockRun]) -> list[int]:
    """Rewrite `path`'s text blocks whose block printed something else this run (`refreshed_output`: the numbers
    change, the `...` marks stay); the lines of the blocks rewritten. For re-recording after a change that moves
    numbers on purpose (a new library version, a lesson's new seed), never to make a failure go away unread:
    `git diff` shows what moved, and the prose that quotes those numbers needs the same change."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    blocks = {block.line: block for block in python_blocks(text)}
    changed = []
    for run in reversed(runs):  # from the end of the file, so that earlier line numbers stay put
        block = blocks.get(run.line)
        if run.error is not None or block is None or block.expected is None:
            continue
        if output_matches(block.expected, run.stdout):
            continue
        first = block.expected_line  # the ```text fence; the output is the lines after it, up to the closing fence
        last = first + len(block.expected.splitlines())
        lines[first:last] = [refreshed_output(block.expected, run.stdout)]
        changed.append(block.line)
    if changed:
        path.write_text("".join(lines), encoding="utf-8")
    return sorted(changed)
