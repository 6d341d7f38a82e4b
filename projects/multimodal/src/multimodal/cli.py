"""The `multimodal` command: train, eval, zeroshot, export, index, search, bench, demo (see `multimodal <verb> --help`).

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
    IndexArgs,
    SearchArgs,
    TrainConfig,
    ZeroShotArgs,
)


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


def demo_index(run_dir, images, device: str):
    """An index for the demo, in a temporary folder: of `images`, or of the run's own test scenes (seen and
    never-seen pairs, 100 of each, written as PNG with their captions as names)."""
    from types import SimpleNamespace

    from dlshared.demo import scratch_folder

    from .artifacts import load_run, run_splits
    from .search import index

    work = scratch_folder("multimodal-demo-")
    if images is None:
        run = load_run(run_dir, device)
        images = work / "test-scenes"
        images.mkdir()
        for name, pairs in run_splits(run).test.items():
            for i in range(min(100, len(pairs))):
                pairs.load(i).save(images / f"{name}-{i:03d}.png")
    index(SimpleNamespace(images=images, out=work / "index", ckpt=run_dir, runs=None, device=device))
    return work / "index"


def demo_command(args: DemoArgs) -> None:
    from dlshared.demo import serve

    from .artifacts import SHIPPED, load_run
    from .demo import build_demo
    from .train import train

    def build(run_dir):
        return build_demo(load_run(run_dir, args.device), demo_index(run_dir, args.images, args.device))

    serve(PROJECT, args, build, train, PRESETS["quick"], shipped=SHIPPED)


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
    "export": Command(
        "multimodal.export:export", ExportArgs, "Both towers as ONNX (dynamic batch), normalised outputs."
    ),
    "index": Command(
        "multimodal.search:index", IndexArgs, "Embed a folder of images into a faiss index (incremental)."
    ),
    "search": Command("multimodal.search:search", SearchArgs, "The indexed images closest to a text or an image."),
    "bench": Command(
        "multimodal.bench:bench",
        BenchArgs,
        "Embedding throughput (PyTorch, ONNX Runtime), faiss search (--profile: a training trace).",
    ),
    "demo": Command(demo_command, DemoArgs, "Serve the Gradio demo (the newest run, else the shipped quick model)."),
}


def main(argv: list[str] | None = None) -> None:
    run_cli("multimodal", COMMANDS, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
