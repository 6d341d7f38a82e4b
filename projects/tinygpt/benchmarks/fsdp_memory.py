"""Bytes of parameters and AdamW state each process holds under DDP and under FSDP (course day 33).

    uv run python projects/tinygpt/benchmarks/fsdp_memory.py --preset quick --nprocs 2 4

For each process count, trains one step of the preset with --parallel ddp, then with --parallel fsdp, in that many
CPU processes (gloo, under `dlshared.processes.run_distributed`, which sets the variables torchrun sets), and prints
what `train` reports (`param_bytes_per_rank`, `optimizer_bytes_per_rank`: held between steps; of a sharded tensor,
the rank's own shard), the largest rank's, beside the formula: P fp32 parameters are 4P bytes, AdamW's two moments
8P and a 4-byte step counter per tensor; DDP holds all of it on every rank, FSDP 1/N of every tensor but the
counters. Gradients (4P, or 4P/N) live only from backward to zero_grad, so they are not in the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

from dlshared.processes import run_distributed
from tinygpt.config import PRESETS
from tinygpt.model import build_model, model_config
from tinygpt.parallel import train_in_turn

STRATEGIES = ("ddp", "fsdp")


def measure(preset: str, nprocs: int, out: Path) -> tuple[list[dict], int, int]:
    """Per strategy, the largest rank's bytes; and the model's parameter count P and number of tensors."""
    cfg = dataclasses.replace(
        PRESETS[preset],
        out=out,
        device="cpu",
        max_iters=1,
        eval_interval=1,
        eval_iters=1,
        sample_tokens=0,
        progress=False,
    )
    runs = [dataclasses.replace(cfg, name=f"{parallel}-{nprocs}", parallel=parallel) for parallel in STRATEGIES]
    per_rank = run_distributed(train_in_turn, runs, nprocs=nprocs)  # [rank][run] -> that rank's metrics
    rows = [
        {key: max(ranks[i][key] for ranks in per_rank) for key in ("param_bytes_per_rank", "optimizer_bytes_per_rank")}
        for i in range(len(STRATEGIES))
    ]
    model = build_model(model_config(cfg, per_rank[0][0]["vocab_size"]))
    return rows, sum(p.numel() for p in model.parameters()), len(list(model.parameters()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick", choices=sorted(PRESETS), help="the model measured")
    parser.add_argument("--nprocs", type=int, nargs="+", default=[2], help="process counts to measure")
    args = parser.parse_args()
    print("| Strategy | Processes | Parameters | AdamW state | Together | vs DDP | Formula: 12P/N + 4T |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as out:
        for nprocs in args.nprocs:
            rows, n_params, n_tensors = measure(args.preset, nprocs, Path(out))
            ddp_total = rows[0]["param_bytes_per_rank"] + rows[0]["optimizer_bytes_per_rank"]
            for parallel, row in zip(STRATEGIES, rows, strict=True):
                total = row["param_bytes_per_rank"] + row["optimizer_bytes_per_rank"]
                shards = nprocs if parallel == "fsdp" else 1
                print(
                    f"| {parallel} | {nprocs} | {row['param_bytes_per_rank']:,} | {row['optimizer_bytes_per_rank']:,}"
                    f" | {total:,} | {total / ddp_total:.3f}x | {round(12 * n_params / shards) + 4 * n_tensors:,} |"
                )
    print(f"bytes per rank, the largest rank's; P = {n_params:,} parameters in T = {n_tensors} tensors")


if __name__ == "__main__":
    main()
