"""tinygpt's training tokens/s against nanoGPT's, measured side by side in one run, repeated: a ratio, not two
numbers from different days.

Each round runs, as separate fresh processes on the same machine and the same data:

    nanogpt        nanogpt_reference.py: nanoGPT's model.py and train.py loop as they run out of the box on a CPU
                   (float32: train.py's autocast context is a no-op off CUDA)
    ours-fp32      `tinygpt bench` at the same recipe, float32: the ratio at equal precision
    ours-bf16      `tinygpt bench --mixed-precision bf16`: the ratio a user of this project gets on a CPU with AMX

The order of the three rotates from round to round, so a slow drift of the machine (thermal, another process)
does not always hit the same one. Steady-state tokens/s only: warm-up steps are left out of both. The last line
printed is JSON: every round's figures, and each ratio's mean ± std over the rounds.

    uv run python projects/tinygpt/benchmarks/versus_nanogpt.py --preset shakespeare-char --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent / "src/tinygpt/data/tinyshakespeare.txt"  # shipped with tinygpt
CONTENDERS = ("nanogpt", "ours-fp32", "ours-bf16")


def command(contender: str, preset: str, data: Path, steps: int, warmup: int) -> list[str]:
    if contender == "nanogpt":  # train.py runs iterations 0..max_iters: warmup + steps + 1 of them, warmup skipped
        script = str(HERE / "nanogpt_reference.py")
        timing = ["--max-iters", str(warmup + steps), "--eval-iters", "1", "--eval-interval", "1000000"]
        return [sys.executable, script, "--preset", preset, "--data", str(data), *timing, "--warmup-skip", str(warmup)]
    precision = "bf16" if contender == "ours-bf16" else "no"
    timing = ["--steps", str(steps), "--warmup", str(warmup), "--new-tokens", "0", "--mixed-precision", precision]
    return [sys.executable, "-m", "tinygpt.cli", "bench", "--preset", preset, "--data", str(data), *timing]


def tokens_per_s(contender: str, argv: list[str], env: dict[str, str]) -> float:
    """Run one contender in a fresh process; its steady-state training tokens/s from the JSON it prints last."""
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{contender} failed ({' '.join(argv)}):\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["steady_tokens_per_s"] if contender == "nanogpt" else result["train_tokens_per_s"]


def mean_std(values: list[float]) -> dict:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.fmean(values), 3), "std": round(spread, 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=["shakespeare-char", "shakespeare-char-cpu"], default="shakespeare-char")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="plain-text corpus (tiny Shakespeare)")
    p.add_argument("--rounds", type=int, default=3, help="times each contender runs")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per run")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    p.add_argument(
        "--omp-wait-policy",
        choices=["inherit", "passive"],
        default="inherit",
        help="passive: every contender runs with OMP_WAIT_POLICY=PASSIVE (idle threads sleep, not spin)",
    )
    args = p.parse_args()
    env = os.environ | ({"OMP_WAIT_POLICY": "PASSIVE"} if args.omp_wait_policy == "passive" else {})
    if not args.data.is_file():
        raise SystemExit(f"--data {args.data}: no such file")

    rounds = []
    for r in range(args.rounds):
        order = CONTENDERS[r % 3 :] + CONTENDERS[: r % 3]  # rotate who goes first
        measured = {c: tokens_per_s(c, command(c, args.preset, args.data, args.steps, args.warmup), env) for c in order}
        measured |= {f"{c}_vs_nanogpt": round(measured[c] / measured["nanogpt"], 3) for c in CONTENDERS[1:]}
        print(f"round {r + 1}: " + "  ".join(f"{k} {v:,.2f}" for k, v in measured.items()), flush=True)
        rounds.append(measured)
    summary = {key: mean_std([r[key] for r in rounds]) for key in rounds[0]}
    threads = {"OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "unset"), "OMP_WAIT_POLICY": env.get("OMP_WAIT_POLICY")}
    threads["cpus"] = os.cpu_count()
    print(json.dumps({"preset": args.preset, "rounds": rounds, "summary": summary, **threads}), flush=True)


if __name__ == "__main__":
    main()
