"""The `multimodal` command: train, eval, zeroshot (see `multimodal <verb> --help`).

A verb that returns a dict has it printed as the last stdout line, one JSON object (dlshared.cli.run_cli).
"""

from __future__ import annotations

import sys

from dlshared.cli import Command, UserError, run_cli

from .config import PRESETS, PROJECT, RESUME_MAY_CHANGE, EvalArgs, TrainConfig, ZeroShotArgs


def eval_command(args: EvalArgs) -> dict:
    """The saved model's retrieval and zero-shot figures on its own test splits (train's `test`)."""
    from .artifacts import find_run, load_run, run_splits
    from .evaluate import evaluate

    run = load_run(find_run(args.ckpt, args.runs), args.device)
    return {"test": evaluate(run.model, run.tokenizer, run_splits(run), run.device), "run_dir": str(run.dir)}


def zeroshot_command(args: ZeroShotArgs) -> dict:
    """Zero-shot accuracy and confusion matrix on any ImageFolder tree, the class names turned into prompts."""
    from .artifacts import find_run, load_run
    from .evaluate import zero_shot_folder

    if not args.data.is_dir():
        raise UserError(f"--data {args.data}: no such folder (an ImageFolder tree: one sub-folder per class)")
    if not all("{}" in t for t in args.templates):
        raise UserError("--templates: every template needs {} where the class name goes")
    run = load_run(find_run(args.ckpt, args.runs), args.device)
    try:
        result = zero_shot_folder(run.model, run.tokenizer, run.preprocess, args.data, run.device, args.templates)
    except (FileNotFoundError, OSError) as err:  # torchvision: no class folders / no images, or an unreadable file
        raise UserError(f"--data {args.data}: {str(err).splitlines()[0][:200]}") from None
    return {**result, "run_dir": str(run.dir)}


COMMANDS = {
    "train": Command(
        "multimodal.train:train",
        TrainConfig,
        "Train CLIP contrastively on image-caption pairs (the embedded scenes by default).",
        PRESETS,
        "quick",
        resumes=PROJECT,  # --resume: the run's own config.json, with the typed flags it may change on top
        may_change=RESUME_MAY_CHANGE,
    ),
    "eval": Command(eval_command, EvalArgs, "Retrieval recall@k and zero-shot accuracy per attribute of a run."),
    "zeroshot": Command(zeroshot_command, ZeroShotArgs, "Zero-shot accuracy on an ImageFolder tree."),
}


def main(argv: list[str] | None = None) -> None:
    run_cli("multimodal", COMMANDS, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
