"""`capstones sweep <project>`: train the same preset with several seeds and report each metric as mean ± std.

One seed is an anecdote. Every headline in the READMEs comes from this command, for example

    uv run capstones sweep classifier --seeds 0 1 2 --metrics test_accuracy
    uv run capstones sweep detector --train-args="--epochs 8" --metrics test_map test_map_50

Each seed is a separate `python -m <project>.cli train --seed S --name <name>-seed<S>` process (so runs cannot
share state), one after the other (parallel runs would spoil each other's timings). A seed whose run folder already
holds metrics.json is read, not retrained, so an interrupted sweep continues where it stopped. The summary goes to
RUNS/<project>/<name>.sweep.json and, as one JSON object, to stdout.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import tyro

from .cli import UserError
from .runs import check_name


@dataclasses.dataclass
class SweepConfig:
    project: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="PROJECT")]
    """Project whose `train` verb to run, e.g. classifier."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds (the data split stays fixed: it has its own seed in every project)."""
    metrics: tuple[str, ...] = ()
    """Keys of metrics.json to summarise (a.b for nested values); default: every top-level number."""
    train_args: str = ""
    """Further flags for `train`, as one string after an equals sign: --train-args="--preset quick --epochs 10"."""
    name: str = "sweep"
    """Run names are NAME-seedS; the summary is RUNS/PROJECT/NAME.sweep.json."""
    out: Path = Path("runs")
    """Root of the run folders (as train's --out)."""


def lookup(metrics: dict, key: str) -> Any:
    value: Any = metrics
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def summarise(values: list[float]) -> dict:
    """Mean and sample standard deviation (n - 1; 0 for one value), with the values themselves."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "n": len(values), "values": values}


def sweep(cfg: SweepConfig) -> dict:
    check_name(cfg.project, "project")
    check_name(cfg.name, "--name")
    if not cfg.seeds:
        raise UserError("--seeds needs at least one seed")
    extra = shlex.split(cfg.train_args)
    if any(flag in extra for flag in ("--seed", "--name", "--out")):
        raise UserError("--train-args must not set --seed, --name or --out (the sweep sets them)")
    runs, wall = [], []
    for seed in cfg.seeds:
        run_dir = cfg.out / cfg.project / f"{cfg.name}-seed{seed}"
        if not (run_dir / "metrics.json").is_file():
            command = [sys.executable, "-m", f"{cfg.project}.cli", "train", "--seed", str(seed)]
            command += ["--name", run_dir.name, "--out", str(cfg.out), *extra]
            print(f"--- seed {seed}: {shlex.join(command[1:])}", file=sys.stderr, flush=True)
            started = time.perf_counter()
            if subprocess.run(command, env=os.environ.copy(), stdout=subprocess.DEVNULL).returncode != 0:
                raise UserError(f"training with seed {seed} failed (see above); its run folder is {run_dir}")
            wall.append(time.perf_counter() - started)
        runs.append(json.loads((run_dir / "metrics.json").read_text(encoding="utf-8")))
    keys = cfg.metrics or tuple(k for k, v in runs[0].items() if isinstance(v, int | float) and not isinstance(v, bool))
    table = {}
    for key in keys:
        values = [lookup(run, key) for run in runs]
        if any(not isinstance(v, int | float) for v in values):
            raise UserError(f"metric {key!r} is not a number in every run's metrics.json")
        table[key] = summarise([float(v) for v in values])
    result = {"project": cfg.project, "seeds": list(cfg.seeds), "train_args": cfg.train_args, "metrics": table}
    if wall:
        result["wall_seconds_per_run"] = summarise(wall)
    (cfg.out / cfg.project).mkdir(parents=True, exist_ok=True)
    (cfg.out / cfg.project / f"{cfg.name}.sweep.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for key, stats in table.items():
        print(f"{key}: {stats['mean']:.4f} ± {stats['std']:.4f} (n={stats['n']})", file=sys.stderr)
    return result
