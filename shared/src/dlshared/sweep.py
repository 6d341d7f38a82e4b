"""`capstones sweep <project>`: train the same preset with several seeds and report each metric as mean ± std.

One seed is an anecdote. Every headline in the READMEs comes from this command, for example

    uv run capstones sweep classifier --seeds 0 1 2 --metrics test_accuracy
    uv run capstones sweep detector --train-args="--epochs 8" --metrics test_map test_map_50

Each seed is a separate `python -m <project>.cli train --seed S --name <name>-seed<S>` process (so runs cannot
share state), one after the other (parallel runs would spoil each other's timings). A seed whose run folder already
holds metrics.json is read, not retrained, so an interrupted sweep continues where it stopped; that is why the
sweep records its --train-args in RUNS/<project>/<name>.sweep.json before the first run and refuses to reuse the
name with other flags (the runs of another recipe would be read as this one's). The default name is derived from
--train-args, so two recipes never share runs. The summary is added to that file and printed as one JSON object.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from .cli import NonNegative, UserError
from .runs import check_name


@dataclasses.dataclass
class SweepConfig:
    project: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="PROJECT")]
    """Project whose `train` verb to run, e.g. classifier."""
    seeds: tuple[NonNegative, ...] = (0, 1, 2)
    """Training seeds (the data split stays fixed: it has its own seed in every project)."""
    metrics: tuple[str, ...] = ()
    """Keys of metrics.json to summarise (a.b for nested values); default: every top-level number."""
    train_args: str = ""
    """Further flags for `train`, as one string after an equals sign: --train-args="--preset quick --epochs 10"."""
    name: str | None = None
    """Run names are NAME-seedS; the summary is RUNS/PROJECT/NAME.sweep.json. Default: sweep, followed by the
    --train-args as a slug (sweep-task-recommend-model-mf)."""
    out: Path = Path("runs")
    """Root of the run folders (as train's --out)."""
    omp_wait_policy: Literal["inherit", "passive"] = "inherit"
    """passive: the seeds' processes run with OMP_WAIT_POLICY=PASSIVE, so idle OpenMP threads sleep instead of
    spinning: several times faster when another process shares the cores, ~15% slower on quiet ones (measured
    in the classifier README). A flag, not an environment prefix, so the command reads the same in PowerShell."""


def lookup(metrics: dict, key: str) -> Any:
    value: Any = metrics
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def summarise(values: list[float]) -> dict:
    """Mean and sample standard deviation (n - 1; 0 for one value), with the values themselves."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "n": len(values), "values": values}


def default_name(train_args: str) -> str:
    """sweep, or sweep-<the train args as a slug>: "--task recommend --model mf" -> sweep-task-recommend-model-mf
    (a long one is cut and ends with a hash of the whole, so different flags never share a name)."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", train_args).strip("-.")
    if len(slug) > 60:
        slug = slug[:50].rstrip("-.") + "-" + hashlib.sha1(train_args.encode()).hexdigest()[:8]
    return f"sweep-{slug}" if slug else "sweep"


def claim_name(summary: Path, cfg: SweepConfig, name: str) -> None:
    """Record this sweep's flags under its name, or refuse if the name's runs were made with other flags."""
    recorded = json.loads(summary.read_text(encoding="utf-8")) if summary.is_file() else None
    if recorded is not None and recorded.get("train_args") != cfg.train_args:
        raise UserError(
            f"{summary}: the runs named {name}-seed* were trained with --train-args={recorded.get('train_args')!r}, "
            f"not {cfg.train_args!r}; give this sweep another --name"
        )
    finished = [s for s in cfg.seeds if (summary.parent / f"{name}-seed{s}" / "metrics.json").is_file()]
    if recorded is None and finished:
        raise UserError(
            f"{summary.parent / f'{name}-seed{finished[0]}'} holds a finished run that no sweep recorded: its flags "
            "are unknown; give this sweep another --name"
        )
    if recorded is None:
        summary.parent.mkdir(parents=True, exist_ok=True)
        record = {"project": cfg.project, "seeds": list(cfg.seeds), "train_args": cfg.train_args}
        summary.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def sweep(cfg: SweepConfig) -> dict:
    check_name(cfg.project, "project")
    name = cfg.name if cfg.name is not None else default_name(cfg.train_args)
    check_name(name, "--name")
    if not cfg.seeds:
        raise UserError("--seeds needs at least one seed")
    extra = shlex.split(cfg.train_args)
    if any(flag in extra for flag in ("--seed", "--name", "--out")):
        raise UserError("--train-args must not set --seed, --name or --out (the sweep sets them)")
    summary = cfg.out / cfg.project / f"{name}.sweep.json"
    claim_name(summary, cfg, name)
    runs, wall = [], []
    for seed in cfg.seeds:
        run_dir = cfg.out / cfg.project / f"{name}-seed{seed}"
        if not (run_dir / "metrics.json").is_file():
            command = [sys.executable, "-m", f"{cfg.project}.cli", "train", "--seed", str(seed)]
            command += ["--name", run_dir.name, "--out", str(cfg.out), *extra]
            print(f"--- seed {seed}: {shlex.join(command[1:])}", file=sys.stderr, flush=True)
            started = time.perf_counter()
            env = os.environ | ({"OMP_WAIT_POLICY": "PASSIVE"} if cfg.omp_wait_policy == "passive" else {})
            if subprocess.run(command, env=env, stdout=subprocess.DEVNULL).returncode != 0:
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
    summary.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for key, stats in table.items():
        print(f"{key}: {stats['mean']:.4f} ± {stats['std']:.4f} (n={stats['n']})", file=sys.stderr)
    return result
