"""How an LSTM and a GPT use their context: next-token loss at each position of the window, for trained runs.

    uv run python projects/tinygpt/benchmarks/lstm_vs_gpt.py runs/tinygpt/sweep-seed0 \
        runs/tinygpt/sweep-preset-quick-lstm-seed0 --out projects/tinygpt/assets/lstm_vs_gpt.png

Each run is scored on its own validation split (--windows evenly spaced windows, the same windows for runs on the
same text) by `tinygpt.evaluate.loss_by_position`, the function behind `tinygpt eval --by-position`. Prints one
JSON line per run (parameters, val_loss from its metrics.json, the mean loss over bands of positions: one
position's mean is noisy) and draws the curves into --out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from tinygpt.artifacts import load_model, read_run_config
from tinygpt.data import load_text, split_text
from tinygpt.evaluate import loss_by_position

BANDS = ((0, 1), (1, 4), (4, 16), (16, 64), (64, 128))
"""Positions [start, end) whose losses are averaged: the first token, the next few, ... the second half."""


def score(run_dir: Path, windows: int) -> dict:
    loaded = load_model(run_dir, "cpu")
    cfg = read_run_config(run_dir)
    _, val_text = split_text(load_text(cfg.data, cfg.dataset, cfg.max_chars)[0])
    ids = torch.tensor(loaded.tokenizer.encode(val_text), dtype=torch.int32)
    curve = loss_by_position(loaded.model, ids, loaded.model.cfg.block_size, cfg.batch_size, windows)
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    return {
        "run": run_dir.name,
        "arch": loaded.model.cfg.arch,
        "parameters": loaded.model.num_params(),
        "val_loss": metrics["val_loss"],
        "loss_by_band": {
            f"{a}-{b - 1}": round(sum(curve[a:b]) / len(curve[a:b]), 3) for a, b in BANDS if b <= len(curve)
        },
        "curve": curve,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="trained tinygpt run folders")
    parser.add_argument("--out", type=Path, default=Path("lstm_vs_gpt.png"), help="the picture to write")
    parser.add_argument("--windows", type=int, default=2048, help="validation windows scored per run")
    args = parser.parse_args()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for run_dir in args.runs:
        result = score(run_dir, args.windows)
        curve = result.pop("curve")
        print(json.dumps(result))
        label = f"{result['arch']} ({result['parameters'] / 1e6:.2f} M): val_loss {result['val_loss']:.3f}"
        ax.plot(range(1, len(curve) + 1), curve, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("position in the window (tokens of context seen)")
    ax.set_ylabel("next-token loss (nats)")
    ax.set_title("Loss by position, validation split")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90, bbox_inches="tight")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
