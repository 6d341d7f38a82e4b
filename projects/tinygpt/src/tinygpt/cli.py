"""The `tinygpt` command: train, eval, generate, export, bench, demo (see `tinygpt <verb> --help`).

A verb that returns a dict has it printed as the last stdout line, one JSON object (dlshared.cli.run_cli).
"""

from __future__ import annotations

from dlshared.cli import Command, UserError, run_cli

from .config import PRESETS, BenchArgs, DemoArgs, EvalArgs, ExportArgs, GenerateArgs, TrainConfig, config_from_dict


def eval_command(args: EvalArgs) -> dict:
    """Loss and perplexity of a run on its own validation split (every window: train's final val_loss) or a file."""
    import torch

    from dlshared.checkpoint import load_json

    from .artifacts import load_model, resolve_checkpoint
    from .data import load_text, read_text_file, split_text
    from .evaluate import evaluate_loss, perplexity, precision_autocast

    run_dir = resolve_checkpoint(args.ckpt, args.runs)
    loaded = load_model(run_dir, args.device)
    if not (run_dir / "config.json").is_file():
        raise UserError(f"{run_dir} has no config.json: it is not a complete tinygpt run folder")
    run_cfg = config_from_dict(load_json(run_dir / "config.json"))
    if args.data is not None:
        text, split = read_text_file(args.data), str(args.data)
    else:  # the run's own validation split: the same text and 90/10 cut as training
        _, text = split_text(load_text(run_cfg.data, run_cfg.dataset, run_cfg.max_chars)[0])
        split = "validation split"
    ids = torch.tensor(loaded.tokenizer.encode(text), dtype=torch.int32)
    block = loaded.model.cfg.block_size
    if len(ids) < block + 1:
        raise UserError(f"{split}: {len(ids)} tokens, fewer than one context window of {block + 1}")
    # the run's batch size and precision: the same sums in the same order as train's final val_loss
    batch_size = args.batch_size or run_cfg.batch_size
    autocast = precision_autocast(loaded.device, run_cfg.mixed_precision)
    loss = evaluate_loss(loaded.model, ids, block, batch_size, args.max_windows, autocast=autocast)
    return {
        "loss": round(loss, 4),
        "perplexity": round(perplexity(loss), 3),
        "split": split,
        "windows": args.max_windows or "all",
        "tokens": len(ids),
        "run_dir": str(run_dir),
    }


def generate_command(args: GenerateArgs) -> str:
    """Stream a completion to stdout as it is sampled; returns it (not printed again)."""
    from .artifacts import load_model, resolve_checkpoint
    from .serve import stream_completion

    loaded = load_model(resolve_checkpoint(args.ckpt, args.runs), args.device)
    sampling = {"top_k": args.top_k, "top_p": args.top_p, "seed": args.seed, "use_cache": not args.no_cache}
    print(args.prompt, end="", flush=True)
    completion = ""
    for so_far in stream_completion(loaded, args.prompt, args.max_new_tokens, args.temperature, **sampling):
        print(so_far[len(completion) :], end="", flush=True)  # only what is new
        completion = so_far
    print()
    return completion


def demo_command(args: DemoArgs) -> None:
    from dlshared.demo import serve

    from .artifacts import load_model
    from .demo import build_demo
    from .train import train

    serve("tinygpt", args, lambda run_dir: build_demo(load_model(run_dir, args.device)), train, PRESETS["quick"])


COMMANDS = {
    "train": Command(
        "tinygpt.train:train",
        TrainConfig,
        "Train a GPT; writes runs/tinygpt/NAME.",
        PRESETS,
        "quick",
        hide=("history", "sample"),
    ),
    "eval": Command(eval_command, EvalArgs, "Loss and perplexity on the run's validation split or a text file."),
    "generate": Command(generate_command, GenerateArgs, "Continue a prompt, streamed to stdout."),
    "export": Command(
        "tinygpt.export:export_hf", ExportArgs, "Export a Hugging Face model folder (GPT-2 or Llama) + tokenizer."
    ),
    "bench": Command(
        "tinygpt.bench:bench", BenchArgs, "Training tokens/s and MFU; generation tokens/s with/without cache."
    ),
    "demo": Command(demo_command, DemoArgs, "Serve the Gradio demo (trains a quick model first if none exists)."),
}


def main(argv: list[str] | None = None) -> None:
    run_cli("tinygpt", COMMANDS, argv)


if __name__ == "__main__":
    main()
