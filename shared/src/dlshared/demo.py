"""Gradio helpers: quiet, local-only launching and "use the newest run, or train one first"."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .runs import latest_run


def quiet_gradio() -> None:
    """No analytics or telemetry calls: demos and tests run offline."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def launch(blocks: Any, host: str = "127.0.0.1", port: int | None = 7860, block: bool = True) -> str:
    """Serve `blocks` on host:port (loopback unless told otherwise) and return its local URL.

    `block=False` returns at once (tests call the app through gradio_client, then `blocks.close()`).
    """
    quiet_gradio()
    blocks.queue()
    _, url, _ = blocks.launch(
        server_name=host, server_port=port, prevent_thread_lock=True, quiet=not block, show_error=True
    )
    if block:
        print(f"Serving on {url} (Ctrl+C to stop)", flush=True)
        blocks.block_thread()
    return url


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
    print(
        f"No trained {project} model under {Path(root or 'runs') / project}: training the default one first."
    )
    return train_default()
