"""The `classifier` command: train, eval, export, bench, demo (see `classifier <verb> --help`)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from torch.utils.data import DataLoader

from dlshared.cli import Command, UserError, run_cli

from .config import PRESETS, BenchArgs, DemoArgs, EvalArgs, ExportArgs, TrainConfig


def train_command(cfg: TrainConfig) -> dict:
    from .train import train

    metrics = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every rank returns the same gathered metrics
        print(json.dumps({k: v for k, v in metrics.items() if k != "test"}))
    return metrics


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
        dataset = image_folder(
            root, photo_transforms(predictor.card["image_size"], train=False, augment=False)
        )
        if dataset.classes != classes:
            raise UserError(f"{root} has classes {dataset.classes}; the model knows {classes}")
    else:
        data = load_data(predictor.config)
        dataset = data.test if args.split == "test" else data.val
    logits, labels = predict(predictor, DataLoader(dataset, args.batch_size))
    metrics = {"model": predictor.kind, **classification_metrics(logits, labels, classes)}
    print(json.dumps(metrics))
    return metrics


def export_command(args: ExportArgs) -> dict:
    from .export import export

    result = export(args)
    print(json.dumps(result))
    return result


def bench_command(args: BenchArgs) -> dict:
    from .bench import bench

    result = bench(args)
    print(json.dumps(result))
    return result


def demo_command(args: DemoArgs) -> None:
    from dlshared.demo import launch, run_or_train

    from .artifacts import load_predictor
    from .demo import build_demo
    from .train import train

    def train_quick() -> Path:
        return Path(train(dataclasses.replace(PRESETS["quick"], out=args.runs))["run_dir"])

    run_dir = args.ckpt or run_or_train("classifier", train_quick, args.runs)
    predictor = load_predictor(Path(run_dir))
    print(f"serving {run_dir}")
    launch(build_demo(predictor), host=args.host, port=args.port)


COMMANDS = {
    "train": Command(
        train_command, TrainConfig, "Train a classifier; writes runs/classifier/NAME.", PRESETS, "quick"
    ),
    "eval": Command(eval_command, EvalArgs, "Accuracy, per-class precision/recall, confusion matrix (JSON)."),
    "export": Command(
        export_command, ExportArgs, "Export to ONNX (fp32, dynamic batch) and int8 ONNX (static QDQ)."
    ),
    "bench": Command(
        bench_command, BenchArgs, "Training and inference images/s: PyTorch, ONNX Runtime fp32/int8."
    ),
    "demo": Command(
        demo_command, DemoArgs, "Serve the Gradio demo (trains a quick model first if none exists)."
    ),
}


def main(argv: list[str] | None = None) -> None:
    run_cli("classifier", COMMANDS, argv)


if __name__ == "__main__":
    main()
