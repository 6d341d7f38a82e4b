"""What every training loop needs around it, so that a project's train.py holds set-up, its loop and nothing else.

    run = start_run("classifier", cfg)          # Accelerator, run folder (locked), logger, config.json
    progress = run.resume(model, optimizer, scheduler) or {"step": 0}
    meter = run.meter(total_steps, progress["step"], every=cfg.log_every, unit="images")
    for ...:                                     # the loop, written out in train.py
        ...
        meter.step(step, len(images), loss=loss, lr=lr)
    run.checkpoint(model, optimizer, scheduler, save_weights=..., step=step)
    return run.finish(metrics, "done: ...")

Nothing here hides the loop: device placement, DDP and precision come from Hugging Face Accelerate, the rest is
bookkeeping (folders, logs, progress bar, throughput, resume files).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .checkpoint import RESUME_NAME, load_resume_state, save_json, save_resume_state
from .cli import UserError, validate
from .device import pick_device, resolve_precision
from .monitor import RunLogger, Throughput
from .runs import RunLock, config_to_dict, remove_stale_temporaries, resolve_run_dir


class RunOptions(Protocol):
    """The fields of a training config that `start_run` reads (every project's TrainConfig has them)."""

    out: Path
    name: str | None
    resume: bool
    overwrite: bool
    device: str
    mixed_precision: str
    progress: bool


def start_run(project: str, cfg: RunOptions, required: str = RESUME_NAME, **accelerator_options: Any) -> Run:
    """Create the Accelerator (device, processes, precision), the run folder and its logger; save config.json.

    `accelerator_options` go to `Accelerator(...)` (e.g. gradient_accumulation_steps). A fresh run gets a new
    folder; `cfg.resume` continues one (after `kill -9` too: stale temporary files are removed); the folder is
    locked while this process trains.
    """
    from accelerate import Accelerator

    validate(cfg)  # flags are checked where they are declared, before any folder exists
    try:
        device = pick_device(cfg.device)
    except ValueError as err:
        raise UserError(str(err)) from None
    precision = resolve_precision(cfg.mixed_precision, device)  # "auto": bf16 only where the device has it
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision=precision, **accelerator_options)
    run_dir = resolve_run_dir(project, cfg.out, cfg.name, cfg.resume, required, getattr(cfg, "overwrite", False))
    lock = RunLock(run_dir)
    if accelerator.is_main_process:
        lock.acquire()  # released by run.finish(), or by run_cli when the verb stops with a UserError
        remove_stale_temporaries(run_dir)
    logger = RunLogger(run_dir, enabled=accelerator.is_main_process)
    run = Run(accelerator, run_dir, logger, cfg.progress, lock, resuming=cfg.resume)
    config = config_to_dict(cfg)
    run.log.print(f"config: {json.dumps(config)}")
    if cfg.mixed_precision != precision:
        run.log.print(f"mixed precision {cfg.mixed_precision}: {precision} on this {device.type}")
    run.save_json(config, "config.json")
    return run


@dataclass
class Run:
    accelerator: Any
    dir: Path
    log: RunLogger
    show_progress: bool
    lock: RunLock
    resuming: bool = False

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def save_json(self, obj: Any, name: str) -> None:
        """Write RUN/name atomically, from the main process only."""
        if self.is_main:
            save_json(obj, self.dir / name)

    def meter(self, total: int, initial: int = 0, every: int = 10, unit: str = "samples", warmup: int = 2) -> Meter:
        """A progress bar over `total` optimizer steps, with throughput and periodic TensorBoard scalars."""
        return Meter(self.log, total, initial, every, unit, warmup, self.show_progress and self.is_main)

    def checkpoint(
        self, model, optimizer, scheduler=None, save_weights: Callable[[], None] | None = None, **progress: Any
    ) -> None:
        """Save what resuming needs: model, optimizer, scheduler, the loop's counters (`progress`) and every
        process's own RNG state (and `per_rank` values, e.g. a data sampler's position). `save_weights()` writes
        the published weights first. Call it on every process: it gathers, the main process writes, all wait."""
        from accelerate.utils import gather_object

        from .seed import capture_rng_state

        per_rank = progress.pop("per_rank", None)
        rng = gather_object([capture_rng_state()])  # one entry per process, in rank order
        ranked = gather_object([per_rank]) if per_rank is not None else None
        if self.is_main:
            if save_weights is not None:
                save_weights()
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng, **progress}
            if scheduler is not None:
                state["scheduler"] = scheduler.state_dict()
            if ranked is not None:
                state["per_rank"] = ranked
            save_resume_state(state, self.dir / RESUME_NAME)
        self.accelerator.wait_for_everyone()

    def resume(self, model, optimizer, scheduler=None) -> dict | None:
        """For a run started with --resume: restore model, optimizer, scheduler and this process's RNG from the
        last checkpoint and return the counters saved with them (None for a fresh run)."""
        from .seed import restore_rng_state

        if not self.resuming:
            return None
        path = self.dir / RESUME_NAME
        try:
            state = load_resume_state(path)
        except Exception as err:  # truncated or foreign file: say which and what to do
            raise UserError(f"{path} cannot be read ({type(err).__name__}); start a fresh run instead") from None
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        try:
            model.load_state_dict(state.pop("model"))
            optimizer.load_state_dict(state.pop("optimizer"))
            if scheduler is not None:
                scheduler.load_state_dict(state.pop("scheduler"))
        except (KeyError, RuntimeError, ValueError) as err:  # another model's file, or a changed architecture
            reason = str(err).strip().splitlines()[0][:200]
            raise UserError(f"{path} does not fit this model ({reason}); start a fresh run instead") from None
        rng = state.pop("rng")
        states = rng if isinstance(rng, list) else [rng]  # a list per rank (older files: one dict)
        if len(states) != world:
            self.log.print(f"resume: saved by {len(states)} process(es), resumed by {world}: RNG streams differ")
        restore_rng_state(states[rank % len(states)])
        if "per_rank" in state:
            state["per_rank"] = state["per_rank"][rank % len(state["per_rank"])]
        self.log.print(f"resumed {self.dir} at {', '.join(f'{k} {v}' for k, v in state.items() if _short(v))}")
        return state

    def finish(self, metrics: dict, summary: str) -> dict:
        """Write metrics.json, print the summary line, close the logger and release the folder."""
        self.save_json(metrics, "metrics.json")
        self.log.print(summary)
        self.log.close()
        self.lock.release()
        self.accelerator.end_training()
        return metrics


def _number(value: Any) -> float:
    return value.detach().item() if hasattr(value, "detach") else float(value)


def _short(value: Any) -> bool:
    return isinstance(value, int | float | str)


class Meter:
    """One call per optimizer step: counts throughput, moves the progress bar, and every `every` steps writes
    the given scalars (plus UNIT_per_s) to TensorBoard under train/. Values are turned into floats only on those
    steps, because `.item()` waits for the GPU."""

    def __init__(self, log: RunLogger, total: int, initial: int, every: int, unit: str, warmup: int, show: bool):
        from tqdm.auto import tqdm

        self.log, self.every, self.unit = log, max(1, every), unit
        self.throughput = Throughput(warmup=warmup)
        self.started = time.perf_counter()
        self.bar = tqdm(total=total, initial=initial, desc="train", disable=not show, dynamic_ncols=True)

    @property
    def rate(self) -> float:
        """Items per second of training, warm-up and paused blocks left out."""
        return self.throughput.rate

    @property
    def seconds(self) -> float:
        """Wall time since the meter was made, evaluation and checkpoints included."""
        return time.perf_counter() - self.started

    def step(self, step: int, items: int, **scalars: Any) -> None:
        self.throughput.update(items)
        self.bar.update(1)
        if step % self.every == 0:
            values = {name: _number(value) for name, value in scalars.items()}
            values[f"{self.unit}_per_s"] = self.rate
            self.log.scalars({f"train/{name}": value for name, value in values.items()}, step)
            self.bar.set_postfix({name: f"{value:.4g}" for name, value in values.items()}, refresh=False)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leave the time of the block (evaluation, checkpoints) out of the throughput."""
        started = time.perf_counter()
        yield
        self.throughput.exclude(time.perf_counter() - started)

    def close(self) -> None:
        self.bar.close()


def epochs_for(epochs: int, min_steps: int, steps_per_epoch: int) -> int:
    """The passes to make over the training set: `epochs`, or more when that many passes over a small data set
    would stay under `min_steps` optimizer steps. A preset tuned in epochs on its bundled data would otherwise
    leave a user's smaller folder undertrained (400 images at batch 32 make 13 steps an epoch: 7 epochs = 91 steps)."""
    if steps_per_epoch < 1:
        raise UserError("no training batches: the training set is empty")
    return max(epochs, -(-min_steps // steps_per_epoch))  # ceil(min_steps / steps_per_epoch)
