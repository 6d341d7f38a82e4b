"""torch.profiler around a few training steps: a Chrome trace and a table of the operators that took the time.

    summary = profile_steps(train_step, Path("runs/classifier-profile/x"))  # what `<project> bench --profile` does

The profiler follows a short schedule: `wait` steps run unrecorded (the first calls pay for lazy set-up and
allocator growth), `warmup` steps are recorded and thrown away (the profiler's own start-up lands there), `active`
steps are kept. Written into `out` (replaced whole when an earlier profile wrote it; any other non-empty folder is
refused): `trace.json` (open it in https://ui.perfetto.dev or chrome://tracing), `top_ops.txt` (the profiler's
table, sorted by self time) and `top_ops.md` (its top rows as a Markdown table). Steps run slower under the
profiler: time a step with the bench, read here *where* its time goes (course day 35).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.profiler import ProfilerActivity

from .cli import UserError
from .outputs import check_output_folder, staged_output

TRACE, TABLE, MARKDOWN = "trace.json", "top_ops.txt", "top_ops.md"


@dataclass
class Profile:
    """What `profiled` yields: call `step()` after every step; `summary` is filled when the active steps end."""

    step: Callable[[], None]
    summary: dict[str, Any] = field(default_factory=dict)


def check_profile_folder(out: str | Path) -> Path:
    """Refuse `out` before any work: a file, or a non-empty folder no earlier profile wrote (one line each)."""
    check_output_folder(Path(out), overwrite=True)
    return Path(out)


def profile_folder(project: str, profile: bool, out: Path | None, runs: Path = Path("runs")) -> Path | None:
    """Where `<project> bench --profile` writes: `out` (giving it turns profiling on), else
    runs/<project>-profile/<timestamp>; None when not profiling. Checked now, before the bench's timings."""
    if not profile and out is None:
        return None
    return check_profile_folder(out or Path(runs) / f"{project}-profile" / time.strftime("%Y%m%d-%H%M%S"))


@contextlib.contextmanager
def profiled(
    out: str | Path,
    wait: int = 1,
    warmup: int = 1,
    active: int = 3,
    memory: bool = False,
    on_optimizer_step: bool = False,
    rows: int = 15,
) -> Iterator[Profile]:
    """Profile the steps of the `with` block (CPU, and CUDA where there is one) and write the files into `out`.

    The block calls `profile.step()` after each step, or, with `on_optimizer_step`, every optimizer's `step()`
    does it (a global post-step hook): a loop that cannot be edited, such as a whole `train(cfg)`, is then
    profiled step by step as it runs. Shapes are recorded (`record_shapes`) and matmul FLOPs counted; `memory`
    adds each operator's allocations (`profile_memory`)."""
    out = check_profile_folder(out)
    use_cuda = torch.cuda.is_available()
    sort_by = "self_device_time_total" if use_cuda else "self_cpu_time_total"
    with staged_output(out, overwrite=True) as stage:
        profile = Profile(step=lambda: None)

        def write(prof: torch.profiler.profile) -> None:  # called once, when the active steps are done
            prof.export_chrome_trace(str(stage / TRACE))
            events = prof.key_averages()
            (stage / TABLE).write_text(events.table(sort_by=sort_by, row_limit=rows) + "\n", encoding="utf-8")
            profile.summary.update(summarise(events, active, sort_by, rows, stage / MARKDOWN))

        activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if use_cuda else [])]
        schedule = torch.profiler.schedule(wait=wait, warmup=warmup, active=active, repeat=1)
        options = {"record_shapes": True, "with_flops": True, "profile_memory": memory}
        with torch.profiler.profile(activities=activities, schedule=schedule, on_trace_ready=write, **options) as prof:
            profile.step = prof.step
            hook = None
            if on_optimizer_step:
                hook = register_optimizer_step_post_hook(lambda *_: prof.step())
            try:
                yield profile
            finally:
                if hook is not None:
                    hook.remove()
        if not profile.summary:  # the block ended before the active steps did: no trace was taken
            raise UserError(f"profiling needs {wait + warmup + active} steps; the profiled loop ran fewer")
    recorded = "cpu+cuda" if use_cuda else "cpu"
    profile.summary |= {"trace": str(out / TRACE), "table": str(out / TABLE), "activities": recorded}


def profile_steps(
    step: Callable[[], Any], out: str | Path, wait: int = 1, warmup: int = 1, active: int = 3, **kw
) -> dict:
    """Run `step()` wait + warmup + active times under the profiler (see `profiled`); return the summary."""
    with profiled(out, wait, warmup, active, **kw) as profile:
        for _ in range(wait + warmup + active):
            step()
            profile.step()
    return profile.summary


def summarise(events, steps: int, sort_by: str, rows: int, markdown: Path) -> dict[str, Any]:
    """The top operators per step (ms of self time, calls), written as a Markdown table too; a small dict."""
    step_events = [e for e in events if e.key.startswith("ProfilerStep")]
    ops = [e for e in events if not e.key.startswith("ProfilerStep")]  # a step's self time: Python between ops
    ranked = sorted(ops, key=lambda e: getattr(e, sort_by), reverse=True)

    def ms(microseconds: float) -> float:
        return round(microseconds / steps / 1e3, 3)

    top = [
        {
            "op": e.key,
            "self_cpu_ms": ms(e.self_cpu_time_total),
            **({"self_cuda_ms": ms(e.self_device_time_total)} if sort_by == "self_device_time_total" else {}),
            "calls": round(e.count / steps, 1),
        }
        for e in ranked[:rows]
    ]
    columns = list(top[0]) if top else ["op"]
    lines = [f"| {' | '.join(columns)} |", f"|{'---|' * len(columns)}"]
    lines += [f"| {' | '.join(f'`{v}`' if k == 'op' else str(v) for k, v in row.items())} |" for row in top]
    note = f"Per step, mean of {steps} profiled steps, sorted by {sort_by.replace('_total', '')}."
    markdown.write_text("\n".join([note, "", *lines]) + "\n", encoding="utf-8")
    flops = sum(e.flops for e in events) / steps  # what the profiler counts: matmuls and convolutions
    # a step's wall time as the CPU saw it (under the profiler; on a GPU the kernels may still be running)
    step_ms = ms(sum(e.cpu_time_total for e in step_events))
    summary = {"profiled_steps": steps, "cpu_ms_per_step": step_ms, "top_ops": top[:5]}
    return summary | ({"flops_per_step": flops} if flops else {})
