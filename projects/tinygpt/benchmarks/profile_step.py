"""Profile training steps of a preset with torch.profiler: where does a step's time go?

    uv run python projects/tinygpt/benchmarks/profile_step.py --preset shakespeare-char --bf16 --steps 2

Prints the top operators by self CPU time (the table behind the speed levers recorded in the README).
"""

from __future__ import annotations

import argparse
import contextlib

import torch
from torch.profiler import ProfilerActivity, profile

from tinygpt.config import PRESETS
from tinygpt.model import GPT, model_config
from tinygpt.train import configure_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="shakespeare-char", choices=list(PRESETS))
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast, as --mixed-precision bf16")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=66, help="vocabulary size (66 = tiny Shakespeare, char)")
    parser.add_argument("--rows", type=int, default=25)
    args = parser.parse_args()

    cfg = PRESETS[args.preset]
    torch.manual_seed(0)
    model = GPT(model_config(cfg, args.vocab)).train()
    optimizer = configure_optimizer(cfg, model, torch.device("cpu"))
    step_model = torch.compile(model) if args.compile else model
    x = torch.randint(args.vocab, (cfg.batch_size, cfg.block_size))
    y = torch.randint(args.vocab, (cfg.batch_size, cfg.block_size))
    autocast = (lambda: torch.autocast("cpu", torch.bfloat16)) if args.bf16 else contextlib.nullcontext

    def step() -> None:
        with autocast():
            _, loss = step_model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):  # warm-up (and compilation)
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
