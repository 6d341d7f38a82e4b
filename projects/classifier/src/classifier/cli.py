"""The `classifier` command: train, eval, export, bench, demo (see `classifier <verb> --help`)."""

from __future__ import annotations

from torch.utils.data import DataLoader

from dlshared.cli import Command, UserError, run_cli

from .config import PRESETS, PROJECT, RESUME_MAY_CHANGE, BenchArgs, DemoArgs, EvalArgs, ExportArgs, TrainConfig


def eval_command(args: EvalArgs) -> dict:
    from .artifacts import find_run, load_predictor
    from .data import image_folder, load_data, photo_transforms
    from .evaluate import classification_metrics, predict

    ckpt = find_run(args.ckpt)
    predictor = load_predictor(ckpt, args.device)
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
    metrics = classification_metrics(logits, labels, classes)
    pictures = save_eval_pictures(ckpt, args.pictures, metrics, classes, dataset, logits, labels)
    return {"model": predictor.kind, **metrics, "pictures": pictures}


def save_eval_pictures(ckpt, pictures, metrics, classes, dataset, logits, labels) -> dict:
    """confusion.png (and mistakes.png) into --pictures, else beside what was evaluated: {name: path}."""
    from dlshared.pictures import eval_pictures_dir, save_figures

    from .artifacts import SHIPPED
    from .pictures import eval_figures

    folder = eval_pictures_dir(ckpt.parent if ckpt.suffix == ".onnx" else ckpt, pictures, shipped=SHIPPED)
    if folder is None:  # the package's own weights folder is not ours to write into
        return {}
    return save_figures(folder, eval_figures(metrics, classes, dataset, logits, labels))


def demo_command(args: DemoArgs) -> None:
    from dlshared.demo import serve

    from .artifacts import SHIPPED, load_predictor
    from .demo import build_demo

    def build(run_dir):
        return build_demo(load_predictor(run_dir))

    def train(cfg):  # imported only when there is nothing to serve: the training stack costs seconds at start
        from .train import train

        return train(cfg)

    serve("classifier", args, build, train, PRESETS["quick"], shipped=SHIPPED)


COMMANDS = {
    "train": Command(
        "classifier.train:train",
        TrainConfig,
        "Train a classifier; writes runs/classifier/NAME.",
        PRESETS,
        "quick",
        hide=("history", "test"),
        resumes=PROJECT,  # --resume: the run's own config.json, with the typed flags it may change on top
        may_change=RESUME_MAY_CHANGE,
    ),
    "eval": Command(eval_command, EvalArgs, "Accuracy, per-class precision/recall, confusion matrix (JSON)."),
    "export": Command(
        "classifier.export:export", ExportArgs, "Export to ONNX (fp32, dynamic batch) and int8 ONNX (static QDQ)."
    ),
    "bench": Command(
        "classifier.bench:bench",
        BenchArgs,
        "Training and inference images/s: PyTorch, ONNX Runtime fp32/int8 (--profile: a trace).",
    ),
    "demo": Command(
        demo_command,
        DemoArgs,
        "Serve the Gradio demo (your newest run, else the shipped quick-preset weights: no training).",
    ),
}


def main(argv: list[str] | None = None) -> None:
    run_cli("classifier", COMMANDS, argv)


if __name__ == "__main__":
    main()
