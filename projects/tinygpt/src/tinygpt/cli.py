"""The `tinygpt` command: train, eval, generate, export, bench, demo (see `tinygpt <verb> --help`)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from dlshared.cli import Command, UserError, run_cli

from .config import PRESETS, BenchArgs, DemoArgs, EvalArgs, ExportArgs, GenerateArgs, TrainConfig


def train_command(cfg: TrainConfig) -> dict:
    from .train import train

    metrics = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every rank returns the same metrics
        print(json.dumps({k: v for k, v in metrics.items() if k not in ("history", "sample")}))
    return metrics


def eval_command(args: EvalArgs) -> dict:
    import torch

    from .artifacts import load_model, resolve_checkpoint
    from .data import TRAIN_FRACTION, load_text, read_text_file
    from .evaluate import evaluate_loss, perplexity

    run_dir = resolve_checkpoint(args.ckpt, args.runs)
    loaded = load_model(run_dir, args.device)
    if args.data is not None:
        text, split = read_text_file(args.data), str(args.data)
    else:  # the run's own validation split: the same text and 90/10 cut as training
        from dlshared.checkpoint import load_json

        cfg = TrainConfig(**{k: v for k, v in load_json(run_dir / "config.json").items() if k != "out"})
        cfg.data = Path(cfg.data) if cfg.data else None
        full, _ = load_text(cfg)
        text, split = full[int(len(full) * TRAIN_FRACTION) :], "validation split"
    ids = torch.tensor(loaded.tokenizer.encode(text), dtype=torch.int32)
    block = loaded.model.cfg.block_size
    if len(ids) < block + 1:
        raise UserError(f"{split}: {len(ids)} tokens, fewer than one context window of {block + 1}")
    loss = evaluate_loss(loaded.model, ids, block, args.batch_size, args.max_windows)
    metrics = {"loss": round(loss, 4), "perplexity": round(perplexity(loss), 3), "tokens": len(ids),
               "split": split, "run_dir": str(run_dir)}  # fmt: skip
    print(json.dumps(metrics))
    return metrics


def generate_command(args: GenerateArgs) -> str:
    from .artifacts import load_model, resolve_checkpoint
    from .serve import stream_completion

    loaded = load_model(resolve_checkpoint(args.ckpt, args.runs), args.device)
    completion = ""
    print(args.prompt, end="", flush=True)
    for completion_so_far in stream_completion(loaded, args.prompt, args.max_new_tokens, args.temperature,
                                               args.top_k, args.top_p, args.seed, use_cache=not args.no_cache):  # fmt: skip
        print(completion_so_far[len(completion) :], end="", flush=True)  # only what is new
        completion = completion_so_far
    print()
    return completion


def export_command(args: ExportArgs) -> dict:
    from .export import export_hf

    result = export_hf(args)
    print(json.dumps(result))
    return result


def bench_command(args: BenchArgs) -> dict:
    from .bench import bench

    result = bench(args)
    print(json.dumps(result))
    return result


def demo_command(args: DemoArgs) -> None:
    from dlshared.demo import launch, run_or_train

    from .artifacts import load_model
    from .demo import build_demo
    from .train import train

    def train_quick() -> Path:
        return Path(train(dataclasses.replace(PRESETS["quick"], out=args.runs))["run_dir"])

    run_dir = args.ckpt or run_or_train("tinygpt", train_quick, args.runs)
    loaded = load_model(Path(run_dir), args.device)
    print(f"serving {run_dir}")
    launch(build_demo(loaded), host=args.host, port=args.port)


COMMANDS = {
    "train": Command(train_command, TrainConfig, "Train a GPT; writes runs/tinygpt/NAME.", PRESETS, "quick"),
    "eval": Command(
        eval_command, EvalArgs, "Loss and perplexity on the run's validation split or a text file."
    ),
    "generate": Command(generate_command, GenerateArgs, "Continue a prompt, streamed to stdout."),
    "export": Command(
        export_command, ExportArgs, "Export a Hugging Face model folder (GPT-2 or Llama) + tokenizer."
    ),
    "bench": Command(
        bench_command, BenchArgs, "Training tokens/s and MFU; generation tokens/s with/without cache."
    ),
    "demo": Command(
        demo_command, DemoArgs, "Serve the Gradio demo (trains a quick model first if none exists)."
    ),
}


def main(argv: list[str] | None = None) -> None:
    run_cli("tinygpt", COMMANDS, argv)


if __name__ == "__main__":
    main()
