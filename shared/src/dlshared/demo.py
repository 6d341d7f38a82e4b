"""Gradio helpers: quiet, local-only launching and "use the newest run, or train one first"."""

from __future__ import annotations

import atexit
import dataclasses
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from .runs import latest_run


def quiet_gradio() -> None:
    """No analytics or telemetry calls: demos and tests run offline."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


MAX_UPLOAD = "20mb"
"""Largest file a demo accepts; a bigger upload is refused by the server before any of it reaches our code."""


def scratch_folder(prefix: str) -> Path:
    """A temporary folder for the files a demo serves (example images, a throwaway index), deleted when the
    process exits: files gradio must still read while it serves, so not a `TemporaryDirectory` block."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def free_port_from(host: str, port: int, tries: int = 100) -> int:
    """`port` if nothing listens on it, else the next free one (a second demo need not fail on 7860)."""
    for candidate in range(port, port + tries):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, candidate))
            except OSError:
                continue
            return candidate
    raise OSError(f"no free port in {port}-{port + tries - 1} on {host}")


def launch(
    blocks: Any, host: str = "127.0.0.1", port: int | None = 7860, block: bool = True, share: bool = False
) -> str:
    """Serve `blocks` on host:port (loopback unless told otherwise; the next free port if `port` is taken) and
    return its local URL. `share=True` opens a public Gradio tunnel: only when asked (never from GRADIO_SHARE or
    a notebook host's default). `block=False` returns at once (tests call the app, then `blocks.close()`)."""
    quiet_gradio()
    if port is not None:
        requested, port = port, free_port_from(host, port)
        if port != requested:
            print(f"port {requested} is taken; using {port}", flush=True)
    blocks.queue()
    _, url, _ = blocks.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=True,
        quiet=not block,
        show_error=True,
        share=share,
        max_file_size=MAX_UPLOAD,
    )
    if block:
        print(f"Serving on {url} (Ctrl+C to stop)", flush=True)
        blocks.block_thread()
    return url


class DemoOptions(Protocol):
    """The fields of a project's DemoArgs that `serve` reads."""

    ckpt: Path | None
    runs: Path
    host: str
    port: int


def serve(
    project: str,
    args: DemoOptions,
    build: Callable[[Path], Any],
    train: Callable[[Any], dict],
    quick_preset: Any,
    required: str = "metrics.json",
    shipped: Path | None = None,
) -> None:
    """The `demo` verb every project shares: serve `build(run_dir)` for `args.ckpt`, else for the newest finished
    run under `args.runs`, else for the quick-preset weights the package ships (`shipped`, served at once), else for
    a run of `quick_preset` that `train` makes first."""

    def train_quick() -> Path:
        return Path(train(dataclasses.replace(quick_preset, out=args.runs))["run_dir"])

    if args.ckpt is not None:
        run_dir = Path(args.ckpt)
    elif shipped is not None and latest_run(project, args.runs, required=required) is None:
        print(f"No {project} run under {Path(args.runs) / project}: serving the shipped quick-preset weights")
        print(f"({shipped / 'README.md'} says how they were made; `uv run {project} train` trains your own).")
        run_dir = shipped
    else:
        run_dir = run_or_train(project, train_quick, args.runs, required)
    blocks = build(run_dir)
    print(f"serving {run_dir}", flush=True)
    launch(blocks, host=args.host, port=args.port, share=getattr(args, "share", False))


def run_or_train(
    project: str,
    train_default: Callable[[], Path],
    root: str | os.PathLike | None = None,
    required: str = "metrics.json",
) -> Path:
    """The newest finished run of `project`, or a freshly trained one when there is none."""
    run = latest_run(project, root, required=required)
    if run is not None:
        return run
    print(f"No trained {project} model under {Path(root or 'runs') / project}: training the default one first.")
    return train_default()
