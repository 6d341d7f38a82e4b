"""The `detector` command: train, eval, export, bench, demo, segment, convert-pennfudan (`VERB --help`)."""

from __future__ import annotations

import dataclasses
import os
import sys

from dlshared.cli import Command, UserError, run_cli

from .config import (
    PRESETS,
    PROJECT,
    SEGMENT_PRESETS,
    UNET_PROJECT,
    BenchArgs,
    ConvertArgs,
    DemoArgs,
    EvalArgs,
    ExportArgs,
    SegmentationConfig,
    TrainConfig,
)


def with_resume(command: Command, project: str, args: list[str]) -> Command:
    """`command` (train or segment) whose --resume continues the run under its own config.json, with only the
    flags typed now (`args`) on top: the preset and the defaults describe a new run, not this one."""

    def run(cfg):
        return command.resolve()(resumed_from_run(project, cfg, args) if cfg.resume else cfg)

    return dataclasses.replace(command, fn=run)


def resumed_from_run(project: str, cfg, args: list[str]):
    from dlshared.checkpoint import RESUME_NAME
    from dlshared.runs import check_name, latest_run

    from .artifacts import read_config
    from .config import resumed_config

    run_dir = cfg.out / project / check_name(cfg.name) if cfg.name else latest_run(project, cfg.out, RESUME_NAME)
    if run_dir is None or not (run_dir / "config.json").is_file():
        return cfg  # nothing to resume: start_run says so
    saved = read_config(run_dir / "config.json", type(cfg))
    resumed = resumed_config(saved, cfg, typed_fields(args, type(cfg)), run_dir)
    if os.environ.get("RANK", "0") == "0":  # under torchrun: rank 0 speaks
        print(f"resuming {run_dir} with its own config.json and the flags given now", flush=True)
    return dataclasses.replace(resumed, name=run_dir.name)


def typed_fields(args: list[str], config_type: type) -> set[str]:
    """The fields of `config_type` named on a command line: `--shapes-train 9`, `--epochs=9`, `--no-progress`."""
    names = set()
    for arg in args:
        if arg.startswith("--"):
            flag = arg[2:].split("=", 1)[0].replace("-", "_")
            names |= {flag, flag.removeprefix("no_")}
    return names & {field.name for field in dataclasses.fields(config_type)}


def eval_command(args: EvalArgs) -> dict:
    from torch.utils.data import DataLoader

    from .artifacts import load_detector, read_config, resolve_checkpoint
    from .data import CocoDetection, collate, load_splits
    from .evaluate import coco_map, predict

    run_dir = resolve_checkpoint(args.ckpt, args.runs)
    loaded = load_detector(run_dir, args.device)
    if args.data is not None:  # a folder the model never saw: its test/ or val/ split, or all of it
        root = next((args.data / s for s in ("test", "val") if (args.data / s).is_dir()), args.data)
        dataset = CocoDetection(root, classes=loaded.classes, image_size=loaded.image_size)
    else:  # the run's own test split, rebuilt from its config.json
        if not (run_dir / "config.json").is_file():
            raise UserError(f"{run_dir} has no config.json to rebuild its test split from; pass --data")
        dataset = load_splits(read_config(run_dir / "config.json")).test
    if len(dataset) == 0:
        raise UserError("no images to evaluate")
    loader = DataLoader(dataset, args.batch_size, collate_fn=collate)
    return coco_map(predict(loaded.model, loader, loaded.device)) | {"run_dir": str(run_dir)}


def demo_command(args: DemoArgs) -> None:
    from dlshared.demo import serve
    from dlshared.runs import latest_run

    from .artifacts import load_detector
    from .demo import build_demo
    from .segmentation import load_segmenter
    from .train import train

    def build(run_dir):
        """The detector of `run_dir`, and the newest U-Net run, when there is one, for the segmentation tab."""
        unet_dir = args.unet or latest_run(UNET_PROJECT, args.runs)
        segmenter, card = load_segmenter(unet_dir) if unet_dir else (None, None)
        print(f"U-Net: {unet_dir}" if unet_dir else "no U-Net run: the segmentation tab stays idle", flush=True)
        return build_demo(load_detector(run_dir, args.device), segmenter, card)

    serve(PROJECT, args, build, train, PRESETS["quick"])


def convert_pennfudan_command(args: ConvertArgs) -> dict:
    from .pennfudan import convert_pennfudan

    return convert_pennfudan(args.src, args.out, args.overwrite)


COMMANDS = {
    "train": Command(
        "detector.train:train", TrainConfig, "Train the detector; writes runs/detector/NAME.", PRESETS, "quick"
    ),
    "eval": Command(eval_command, EvalArgs, "COCO box (and mask) mAP of a run on its test split or on a COCO folder."),
    "export": Command(
        "detector.export:export", ExportArgs, "ONNX of the detector (decoding stays outside the graph) + parity check."
    ),
    "bench": Command("detector.bench:bench", BenchArgs, "Training and inference images/s, PyTorch and ONNX Runtime."),
    "demo": Command(demo_command, DemoArgs, "Serve the Gradio demo (trains a quick detector first if none exists)."),
    "segment": Command(
        "detector.segmentation:train_segmentation",
        SegmentationConfig,
        "Train a U-Net for semantic segmentation (mIoU); writes runs/detector-unet/NAME.",
        SEGMENT_PRESETS,
        "quick",
    ),
    "convert-pennfudan": Command(
        convert_pennfudan_command,
        ConvertArgs,
        "Convert the Penn-Fudan pedestrians (PennFudanPed.zip, unzipped) to a COCO folder; prints the counts.",
    ),
}


RUN_VERBS = {"train": PROJECT, "segment": UNET_PROJECT}
"""The verbs that train into a run folder, and its project folder: main() gives them a --resume that reloads the
run's own config.json."""


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    resuming = {verb: with_resume(COMMANDS[verb], project, argv[1:]) for verb, project in RUN_VERBS.items()}
    run_cli("detector", {**COMMANDS, **resuming}, argv)


if __name__ == "__main__":
    main()
