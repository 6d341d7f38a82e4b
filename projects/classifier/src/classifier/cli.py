"""The `classifier` command: train, eval, export, bench, demo (see `classifier <verb> --help`)."""

from __future__ import annotations

import dataclasses
import os
import sys

from torch.utils.data import DataLoader

from dlshared.cli import Command, UserError, run_cli

from .config import PRESETS, PROJECT, BenchArgs, DemoArgs, EvalArgs, ExportArgs, TrainConfig


def train_command(cfg: TrainConfig, args: list[str]) -> dict:
    """`train`; with --resume, the run continues under its own config.json, with only the flags typed now
    (`args`) overriding it: the preset and the defaults describe a new run, not this one."""
    from .train import train

    return train(resumed_from_run(cfg, args) if cfg.resume else cfg)


def resumed_from_run(cfg: TrainConfig, args: list[str]) -> TrainConfig:
    from dlshared.checkpoint import RESUME_NAME
    from dlshared.runs import check_name, latest_run

    from .artifacts import read_config
    from .config import resumed_config

    run_dir = cfg.out / PROJECT / check_name(cfg.name) if cfg.name else latest_run(PROJECT, cfg.out, RESUME_NAME)
    if run_dir is None or not (run_dir / "config.json").is_file():
        return cfg  # nothing to resume: start_run says so
    resumed = resumed_config(read_config(run_dir / "config.json"), cfg, typed_fields(args), run_dir)
    if os.environ.get("RANK", "0") == "0":  # under torchrun: rank 0 speaks
        print(f"resuming {run_dir} with its own config.json and the flags given now", flush=True)
    return dataclasses.replace(resumed, name=run_dir.name)


def typed_fields(args: list[str]) -> set[str]:
    """The TrainConfig fields named on a command line: `--max-train-samples 9`, `--epochs=9`, `--no-augment`."""
    names = set()
    for arg in args:
        if arg.startswith("--"):
            flag = arg[2:].split("=", 1)[0].replace("-", "_")
            names |= {flag, flag.removeprefix("no_")}
    return names & {field.name for field in dataclasses.fields(TrainConfig)}


def eval_command(args: EvalArgs) -> dict:
    from .artifacts import load_predictor
    from .data import image_folder, load_data, photo_transforms
    from .evaluate import classification_metrics, predict

    predictor = load_predictor(args.ckpt, args.device)
    classes = predictor.card["classes"]
    if args.data is not None:  # a tree the model never saw: its test/ or val/ split, or all of it
        root = next((args.data / s for s in ("test", "val") if (args.data / s).is_dir()), args.data)
        if not root.is_dir():
            raise UserError(f"--data {args.data}: no such folder")
        dataset = image_folder(root, photo_transforms(predictor.card["image_size"], train=False, augment=False))
        if dataset.classes != classes:
            raise UserError(f"{root} has classes {dataset.classes}; the model knows {classes}")
    else:
        data = load_data(predictor.config)
        dataset = data.test if args.split == "test" else data.val
    logits, labels = predict(predictor, DataLoader(dataset, args.batch_size))
    return {"model": predictor.kind, **classification_metrics(logits, labels, classes)}


def demo_command(args: DemoArgs) -> None:
    from dlshared.demo import serve

    from .artifacts import load_predictor
    from .demo import build_demo
    from .train import train

    serve("classifier", args, lambda run_dir: build_demo(load_predictor(run_dir)), train, PRESETS["quick"])


COMMANDS = {
    "train": Command(
        "classifier.train:train",  # main() wraps it in train_command, which knows the flags typed
        TrainConfig,
        "Train a classifier; writes runs/classifier/NAME.",
        PRESETS,
        "quick",
        hide=("history", "test"),
    ),
    "eval": Command(eval_command, EvalArgs, "Accuracy, per-class precision/recall, confusion matrix (JSON)."),
    "export": Command(
        "classifier.export:export", ExportArgs, "Export to ONNX (fp32, dynamic batch) and int8 ONNX (static QDQ)."
    ),
    "bench": Command(
        "classifier.bench:bench", BenchArgs, "Training and inference images/s: PyTorch, ONNX Runtime fp32/int8."
    ),
    "demo": Command(demo_command, DemoArgs, "Serve the Gradio demo (trains a quick model first if none exists)."),
}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    train = dataclasses.replace(COMMANDS["train"], fn=lambda cfg: train_command(cfg, argv[1:]))
    run_cli("classifier", {**COMMANDS, "train": train}, argv)


if __name__ == "__main__":
    main()
