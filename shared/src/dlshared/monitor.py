"""TensorBoard + console logging and a throughput meter."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any


class RunLogger:
    """Writes scalars/figures/histograms to TensorBoard in the run folder and summary lines to stdout.

    Only the main process logs (pass `enabled=accelerator.is_main_process`), so DDP runs write one event file.
    """

    def __init__(self, run_dir: str | os.PathLike, enabled: bool = True):
        self.enabled = enabled
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter  # imported lazily: it pulls in tensorboard

            self.writer = SummaryWriter(log_dir=str(Path(run_dir)))

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)

    def figure(self, tag: str, figure: Any, step: int) -> None:
        if self.writer is not None:
            self.writer.add_figure(tag, figure, step)

    def histogram(self, tag: str, values: Any, step: int) -> None:
        if self.writer is not None:
            self.writer.add_histogram(tag, values, step)

    def print(self, message: str) -> None:
        if self.enabled:
            print(message, file=sys.stdout, flush=True)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Throughput:
    """Counts items (samples, tokens) per second of wall time, skipping the first `warmup` updates.

    Warm-up steps pay for allocator growth, lazy init and compilation; steady-state speed is what a long run sees.
    Call `update(n)` after each step *after* the step's work is finished (synchronise CUDA first if timing GPU work).
    """

    def __init__(self, warmup: int = 0):
        self.warmup = warmup
        self.reset()

    def reset(self) -> None:
        self.updates = 0
        self.items = 0
        self.start: float | None = None
        self.last = time.perf_counter()

    def update(self, n: int) -> None:
        self.updates += 1
        now = time.perf_counter()
        if self.updates == self.warmup + 1 and self.start is None:
            self.start = self.last  # the clock starts at the end of the last warm-up step
        if self.updates > self.warmup:
            self.items += n
        self.last = now

    def exclude(self, seconds: float) -> None:
        """Leave `seconds` of other work (evaluation, checkpoints) out of the rate: work done between two updates,
        during warm-up, or after the last update (which must not move the clock's start past the last step)."""
        self.last += seconds
        if self.start is not None:
            self.start += seconds

    @property
    def rate(self) -> float:
        """Items per second since warm-up ended (0 until then)."""
        if self.start is None or self.last <= self.start:
            return 0.0
        return self.items / (self.last - self.start)


def mfu(flops_per_item: float, items_per_second: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: achieved FLOP/s over the hardware's peak (PaLM appendix B)."""
    return flops_per_item * items_per_second / peak_flops if peak_flops > 0 else 0.0
