"""The `tinygpt` command: train, eval, generate, export, bench, demo (see `tinygpt <verb> --help`).

A verb that returns a dict has it printed as the last stdout line, one JSON object (dlshared.cli.run_cli).
"""

from __future__ import annotations

import sys

from dlshared.cli import Command, UserError, run_cli

from .config import (
    PRESETS,
    PROJECT,
    RESUME_MAY_CHANGE,
    BenchArgs,
    DemoArgs,
    EvalArgs,
    ExportArgs,
    GenerateArgs,
    TrainConfig,
)


def eval_command(args: EvalArgs) -> dict:
    """Loss and perplexity of a run on its own validation split (every window: train's final val_loss) or a file;
    attention.png of --prompt."""
    import torch

    from dlshared.pictures import eval_pictures_dir

    from .artifacts import SHIPPED, check_device, load_model, read_run_config, resolve_checkpoint
    from .data import load_text, read_text, split_text
    from .evaluate import evaluate_loss, loss_by_position, perplexity, precision_autocast
    from .pictures import eval_pictures, prompt_ids

    check_device(args.device)
    run_dir = resolve_checkpoint(args.ckpt, args.runs)
    loaded = load_model(run_dir, args.device)
    prompt_ids(loaded, args.prompt)  # a prompt attention.png cannot draw is refused before the loss is computed
    run_cfg = read_run_config(run_dir)
    if args.data is not None:
        text, split = read_text(args.data)
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
    result = {
        "loss": round(loss, 4),  # mlm: of the masked tokens
        "perplexity": round(perplexity(loss), 3),
        "objective": loaded.model.cfg.objective,
        "split": split,
        "windows": args.max_windows or "all",
        "tokens": len(ids),
        "run_dir": str(run_dir),
    }
    if args.by_position:
        if loaded.model.cfg.objective == "mlm":
            raise UserError("--by-position scores next-token prediction; an mlm run predicts masked tokens instead")
        by_position = loss_by_position(loaded.model, ids, block, batch_size)
        result["loss_by_position"] = [round(value, 4) for value in by_position]
    folder = eval_pictures_dir(run_dir, args.pictures, shipped=SHIPPED)
    result["pictures"] = eval_pictures(loaded, args.prompt, folder) if folder is not None else {}
    return result


def generate_command(args: GenerateArgs) -> str:
    """Stream a completion to stdout as it is sampled; returns it (not printed again).

    Generated text is data: on a terminal, escape sequences and control characters in it are dropped (a model
    trained on logs can write colour codes, or worse); piped to a file it is written as generated."""
    from . import serve
    from .artifacts import check_device, load_model, resolve_checkpoint

    check_device(args.device)
    loaded = load_model(resolve_checkpoint(args.ckpt, args.runs), args.device)
    sampling = {"top_k": args.top_k, "top_p": args.top_p, "seed": args.seed, "use_cache": not args.no_cache}
    serve.check_request(loaded, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p)
    out = serve.TerminalText() if sys.stdout.isatty() else None
    print(out.clean(args.prompt) if out else args.prompt, end="", flush=True)
    completion = ""
    for so_far in serve.stream_completion(loaded, args.prompt, args.max_new_tokens, args.temperature, **sampling):
        new = out.update(so_far) if out else so_far[len(completion) :]  # only what is new
        print(new, end="", flush=True)
        completion = so_far
    print(out.finish(completion) if out else "")
    return completion


def demo_command(args: DemoArgs) -> None:
    from dlshared.demo import serve

    from .artifacts import SHIPPED, check_device, load_model
    from .demo import build_demo
    from .train import train

    check_device(args.device)

    def build(run_dir):
        return build_demo(load_model(run_dir, args.device))

    serve("tinygpt", args, build, train, PRESETS["quick"], shipped=SHIPPED)


COMMANDS = {
    "train": Command(
        "tinygpt.train:train",
        TrainConfig,
        "Train a GPT; writes runs/tinygpt/NAME.",
        PRESETS,
        "quick",
        hide=("history", "sample"),
        resumes=PROJECT,  # --resume: the run's own config.json, with the typed flags it may change on top
        may_change=RESUME_MAY_CHANGE,
    ),
    "eval": Command(
        eval_command, EvalArgs, "Loss and perplexity on the run's validation split or a text file; attention.png."
    ),
    "generate": Command(generate_command, GenerateArgs, "Continue a prompt, streamed to stdout."),
    "export": Command(
        "tinygpt.export:export_hf", ExportArgs, "Export a Hugging Face model folder (GPT-2 or Llama) + tokenizer."
    ),
    "bench": Command(
        "tinygpt.bench:bench",
        BenchArgs,
        "Training tokens/s and MFU; generation tokens/s with/without cache (--profile: a trace).",
    ),
    "demo": Command(demo_command, DemoArgs, "Serve the Gradio demo (the newest run, else the shipped quick model)."),
}


def main(argv: list[str] | None = None) -> None:
    run_cli("tinygpt", COMMANDS, argv)


if __name__ == "__main__":
    main()
