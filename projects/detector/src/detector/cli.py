"""The `detector` command: train, eval, export, bench, demo, segment, shapes, convert-pennfudan (`VERB --help`)."""

from __future__ import annotations

from dlshared.cli import Command, UserError, run_cli

from .config import (
    PRESETS,
    PROJECT,
    RESUME_MAY_CHANGE,
    SEGMENT_PRESETS,
    UNET_PROJECT,
    BenchArgs,
    ConvertArgs,
    DemoArgs,
    EvalArgs,
    ExportArgs,
    SegmentationConfig,
    ShapesArgs,
    TrainConfig,
)


def eval_command(args: EvalArgs) -> dict:
    from torch.utils.data import DataLoader

    from dlshared.configs import read_config

    from .artifacts import load_detector, resolve_checkpoint
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
        dataset = load_splits(read_config(run_dir / "config.json", TrainConfig)).test
    if len(dataset) == 0:
        raise UserError("no images to evaluate")
    loader = DataLoader(dataset, args.batch_size, collate_fn=collate)
    metrics = coco_map(predict(loaded.model, loader, loaded.device))
    return metrics | {"run_dir": str(run_dir), "pictures": save_eval_pictures(loaded, dataset, args.pictures)}


def save_eval_pictures(loaded, dataset, pictures) -> dict:
    """detections.png into --pictures, else into the evaluated run folder: {name: path}."""
    from dlshared.pictures import eval_pictures_dir, save_figures

    from .artifacts import SHIPPED
    from .pictures import detections_figure

    folder = eval_pictures_dir(loaded.run_dir, pictures, shipped=SHIPPED)
    if folder is None:  # the package's own weights folder is not ours to write into
        return {}
    figure = detections_figure(loaded.model, dataset, loaded.classes, loaded.device)
    return save_figures(folder, {"detections": figure})


def demo_command(args: DemoArgs) -> None:
    from dlshared.demo import serve
    from dlshared.runs import latest_run

    from .artifacts import SHIPPED, load_detector
    from .demo import build_demo
    from .segmentation import load_segmenter
    from .train import train

    def build(run_dir):
        """The detector of `run_dir`, and the newest U-Net run, when there is one, for the segmentation tab."""
        unet_dir = args.unet or latest_run(UNET_PROJECT, args.runs)
        segmenter, card = load_segmenter(unet_dir) if unet_dir else (None, None)
        print(f"U-Net: {unet_dir}" if unet_dir else "no U-Net run: the segmentation tab stays idle", flush=True)
        return build_demo(load_detector(run_dir, args.device), segmenter, card)

    serve(PROJECT, args, build, train, PRESETS["quick"], shipped=SHIPPED)


def convert_pennfudan_command(args: ConvertArgs) -> dict:
    from .pennfudan import convert_pennfudan

    return convert_pennfudan(args.src, args.out, args.overwrite)


def shapes_command(args: ShapesArgs) -> dict:
    import zlib

    from dlshared.outputs import staged_output

    from .shapes import write_shapes

    sizes = {"train": args.train, "val": args.val, "test": args.test}
    with staged_output(args.out, args.overwrite) as stage:
        for split, n_images in sizes.items():
            split_seed = zlib.crc32(f"{args.style}/{args.seed}/{split}".encode())
            write_shapes(stage / split, n_images, args.image_size, split_seed, style=args.style)
    return {"out": str(args.out), "style": args.style, **sizes}


COMMANDS = {
    "train": Command(
        "detector.train:train",
        TrainConfig,
        "Train the detector; writes runs/detector/NAME.",
        PRESETS,
        "quick",
        resumes=PROJECT,  # --resume: the run's own config.json, with the typed flags it may change on top
        may_change=RESUME_MAY_CHANGE,
    ),
    "eval": Command(eval_command, EvalArgs, "COCO box (and mask) mAP of a run on its test split or on a COCO folder."),
    "export": Command(
        "detector.export:export", ExportArgs, "ONNX of the detector (decoding stays outside the graph) + parity check."
    ),
    "bench": Command(
        "detector.bench:bench",
        BenchArgs,
        "Training and inference images/s, PyTorch and ONNX Runtime (--profile: a trace).",
    ),
    "demo": Command(demo_command, DemoArgs, "Serve the Gradio demo (trains a quick detector first if none exists)."),
    "segment": Command(
        "detector.segmentation:train_segmentation",
        SegmentationConfig,
        "Train a U-Net for semantic segmentation (mIoU); writes runs/detector-unet/NAME.",
        SEGMENT_PRESETS,
        "quick",
        resumes=UNET_PROJECT,
        may_change=RESUME_MAY_CHANGE,
    ),
    "shapes": Command(shapes_command, ShapesArgs, "Write a COCO folder of synthetic shapes, e.g. in another style."),
    "convert-pennfudan": Command(
        convert_pennfudan_command,
        ConvertArgs,
        "Convert the Penn-Fudan pedestrians (PennFudanPed.zip, unzipped) to a COCO folder; prints the counts.",
    ),
}


def main(argv: list[str] | None = None) -> None:
    run_cli("detector", COMMANDS, argv)


if __name__ == "__main__":
    main()
