"""The `detector` command: train, eval, export, bench, demo, segment, convert-pennfudan (`VERB --help`)."""

from __future__ import annotations

import json
import os

from dlshared.cli import Command, UserError, run_cli

from .config import (
    PRESETS,
    SEGMENT_PRESETS,
    BenchArgs,
    ConvertArgs,
    DemoArgs,
    EvalArgs,
    ExportArgs,
    SegmentArgs,
    TrainConfig,
)


def train_command(cfg: TrainConfig) -> dict:
    from .train import train

    metrics = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every rank returns the same metrics
        print(json.dumps({k: v for k, v in metrics.items() if k != "history"}))
    return metrics


def eval_command(args: EvalArgs) -> dict:
    from torch.utils.data import DataLoader

    from dlshared.checkpoint import load_json

    from .artifacts import load_detector, resolve_checkpoint
    from .data import CocoDetection, collate, load_splits
    from .evaluate import coco_map, predict

    run_dir = resolve_checkpoint(args.ckpt, args.runs)
    loaded = load_detector(run_dir, args.device)
    if args.data is not None:
        root = next((args.data / s for s in ("test", "val") if (args.data / s).is_dir()), args.data)
        dataset = CocoDetection(root, classes=loaded.classes, image_size=loaded.image_size)
    else:
        cfg = TrainConfig(**{k: v for k, v in load_json(run_dir / "config.json").items() if k != "out"})
        dataset = load_splits(cfg).test
    if len(dataset) == 0:
        raise UserError("no images to evaluate")
    loader = DataLoader(dataset, args.batch_size, collate_fn=collate)
    metrics = coco_map(predict(loaded.model, loader, loaded.device))
    metrics["run_dir"] = str(run_dir)
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
    import dataclasses
    from pathlib import Path

    from dlshared.demo import launch, run_or_train
    from dlshared.runs import latest_run

    from .artifacts import load_detector
    from .demo import build_demo
    from .segmentation import load_segmenter
    from .train import train

    def train_quick() -> Path:
        return Path(train(dataclasses.replace(PRESETS["quick"], out=args.runs))["run_dir"])

    run_dir = args.ckpt or run_or_train("detector", train_quick, args.runs)
    unet_dir = args.unet or latest_run("detector-unet", args.runs)
    segmenter, card = load_segmenter(unet_dir) if unet_dir else (None, None)
    print(
        f"serving {run_dir}" + (f" and {unet_dir}" if unet_dir else " (no U-Net run: segmentation tab idle)")
    )
    launch(
        build_demo(load_detector(Path(run_dir), args.device), segmenter, card), host=args.host, port=args.port
    )


def segment_command(args: SegmentArgs) -> dict:
    from dlshared.runs import resolve_run_dir

    from .data import load_splits
    from .segmentation import train_segmentation

    run_dir = resolve_run_dir("detector-unet", args.out, args.name, args.resume)
    metrics = train_segmentation(args, load_splits(args), run_dir)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({k: v for k, v in metrics.items() if k != "history"}))
    return metrics


def convert_pennfudan_command(args: ConvertArgs) -> dict:
    from .pennfudan import convert_pennfudan

    result = convert_pennfudan(args.src, args.out)
    print(json.dumps(result))
    return result


COMMANDS = {
    "train": Command(
        train_command, TrainConfig, "Train the detector; writes runs/detector/NAME.", PRESETS, "quick"
    ),
    "eval": Command(
        eval_command,
        EvalArgs,
        "COCO box (and mask) mAP of a run on its test split or on a COCO folder (JSON).",
    ),
    "export": Command(
        export_command, ExportArgs, "ONNX of the detector (decoding stays outside the graph) + parity check."
    ),
    "bench": Command(
        bench_command, BenchArgs, "Training and inference images/s, PyTorch and ONNX Runtime (JSON)."
    ),
    "demo": Command(
        demo_command, DemoArgs, "Serve the Gradio demo (trains a quick detector first if none exists)."
    ),
    "segment": Command(
        segment_command,
        SegmentArgs,
        "Train a U-Net for semantic segmentation (mIoU); runs/detector-unet/NAME.",
        SEGMENT_PRESETS,
        "quick",
    ),
    "convert-pennfudan": Command(
        convert_pennfudan_command,
        ConvertArgs,
        "Convert the Penn-Fudan pedestrians (PennFudanPed.zip, unzipped) to a COCO folder (JSON counts).",
    ),
}


def main(argv: list[str] | None = None) -> None:
    run_cli("detector", COMMANDS, argv)


if __name__ == "__main__":
    main()
