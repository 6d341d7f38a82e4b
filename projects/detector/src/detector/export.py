"""ONNX export of the CenterNet-style detector (course day 19), and running it with ONNX Runtime.

Where decoding happens: outside the graph. The ONNX model maps [0, 1] pixels (B, 3, S, S) to the three dense maps
(heatmap probabilities after the sigmoid, size, offset); the peak search and NMS run afterwards in
`boxes.decode`, on whatever runtime holds the maps. That keeps the graph to plain convolutions, which every
ONNX runtime (ORT, TensorRT, OpenVINO, the browser) runs fast, and leaves NMS, whose output size depends on the
data, to code that handles it natively. `OnnxDetector` does both and returns what `predict` returns.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from dlshared.checkpoint import read_json_object, save_json
from dlshared.cli import UserError, short_reason
from dlshared.configs import WHERE_FIELDS
from dlshared.hub import push_folder
from dlshared.modelcard import Result, train_command, write_model_card
from dlshared.outputs import staged_output

from .artifacts import LoadedDetector, load_detector, resolve_checkpoint
from .boxes import decode
from .config import PRESETS, ExportArgs

OUTPUTS = ("heatmap", "size", "offset")


class MapsForExport(torch.nn.Module):
    """The detector with a tuple output and the sigmoid inside: what the ONNX graph computes."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model(images)
        return out["heatmap"].sigmoid(), out["size"], out["offset"]


def export_onnx(model: torch.nn.Module, image_size: int, path: Path) -> Path:
    """fp32 ONNX, batch dimension dynamic, weights inside the one file."""
    example = torch.rand(2, 3, image_size, image_size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(
        MapsForExport(model.cpu().eval()).eval(),
        (example,),
        dynamo=True,
        input_names=["images"],
        output_names=list(OUTPUTS),
        dynamic_shapes={"images": {0: batch}},
        verbose=False,
    )
    program.save(str(path), external_data=False)
    return path


class OnnxDetector:
    """ONNX Runtime inference + the same decoding as PyTorch: images (B, 3, S, S) -> per-image detections."""

    def __init__(self, path: Path, stride: int = 4, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # ORT's own error types: a missing, truncated or foreign file
            raise UserError(f"{path} is not an ONNX model ONNX Runtime can load ({short_reason(err)})") from None
        self.stride = stride

    def maps(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = self.session.run(list(OUTPUTS), {"images": images.numpy().astype(np.float32)})
        return {name: torch.from_numpy(array) for name, array in zip(OUTPUTS, outputs, strict=True)}

    def __call__(self, images: torch.Tensor, score_threshold: float = 0.05, max_detections: int = 100):
        return decode(self.maps(images), self.stride, max_detections, score_threshold, heatmap_is_logits=False)


def export(args: ExportArgs) -> dict:
    """Write OUT/model.onnx, OUT/card.json, the Hub's model.safetensors + config.json, the run's config (as
    train_config.json) and a Hub model card (README.md) through a staging folder that becomes --out when complete,
    after checking ORT against PyTorch on random images; then, with --push-to-hub, upload it as it is."""
    loaded = load_detector(resolve_checkpoint(args.ckpt, args.runs), "cpu")
    if loaded.arch != "centernet":
        raise UserError(
            f"{loaded.run_dir} holds a torchvision {loaded.arch}; `export` writes the project's own "
            "CenterNet (torchvision's R-CNNs have their own ONNX recipe in the torchvision docs)"
        )
    out = Path(args.out or loaded.run_dir / "export").resolve()
    card = {  # what a runtime needs beside the graph: the classes, the input size, how to decode the maps
        "classes": loaded.classes,
        "image_size": loaded.image_size,
        "stride": loaded.model.cfg.stride,
        "outputs": list(OUTPUTS),
        "decoding": "boxes.decode (outside the graph)",
        "source_run": str(loaded.run_dir),
    }
    with staged_output(out, args.overwrite, sources=(loaded.run_dir,)) as stage:
        path = export_onnx(loaded.model, loaded.image_size, stage / "model.onnx")
        save_json(card, stage / "card.json")
        images = torch.rand(3, 3, loaded.image_size, loaded.image_size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            expected = MapsForExport(loaded.model)(images)
        got = OnnxDetector(path, loaded.model.cfg.stride).maps(images)
        diff = max((got[name] - e).abs().max().item() for name, e in zip(OUTPUTS, expected, strict=True))
        loaded.model.save_pretrained(stage)  # model.safetensors + config.json: what CenterNet.from_pretrained reads
        write_card(stage, loaded)  # reads config.json first: a missing or damaged one is a one-line error
        # every setting, as the card says (config.json is the Hub's: CenterNet's arguments)
        shutil.copyfile(loaded.run_dir / "config.json", stage / "train_config.json")
    result = {"onnx": str(out / "model.onnx"), "max_abs_diff": diff, "run_dir": str(loaded.run_dir)}
    if args.push_to_hub:
        result["pushed"] = push_folder(out, args.push_to_hub)
    return result


SHAPES = (
    "Synthetic images drawn by the project's `shapes.py`: circles, squares and triangles of random size, colour and"
    " rotation on textured backgrounds, partly hiding each other."
)
SCORES = (("map", "test_map", "COCO mAP@[.5:.95]"), ("map_50", "test_map_50", "mAP@.5"))
"""(metric id, key in metrics.json, name a reader knows) of the numbers a card reports."""


def write_card(stage: Path, loaded: LoadedDetector) -> Path:
    """README.md in the Hub's format (dlshared.modelcard), from the run's config.json, card.json, metrics.json."""
    run_dir = loaded.run_dir
    config, card = read_json_object(run_dir / "config.json"), read_json_object(run_dir / "card.json")
    metrics = read_json_object(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else {}
    folder = config.get("data")
    data_id, data_name = (Path(folder).name, f"COCO {folder}") if folder else ("synthetic-shapes", "synthetic shapes")
    results = [
        Result("object-detection", data_id, data_name, metric, metrics[key], name)
        for metric, key, name in SCORES
        if metrics.get(key) is not None
    ]
    command = train_command(
        "detector",
        config,
        PRESETS,
        "quick",
        ignore=(*WHERE_FIELDS, "progress", "log_every", "shapes_root"),  # none of these changes the weights
        processes=metrics.get("processes", 1),
    )
    return write_model_card(
        stage,
        title=f"detector: CenterNet on {data_name}",
        library_name="pytorch",
        pipeline_tag="object-detection",
        tags=[
            "pytorch-capstones",
            "model_hub_mixin",
            "pytorch_model_hub_mixin",
            "object-detection",
            "centernet",
            "onnx",
        ],
        datasets=[data_id],
        license="mit",
        results=results,
        summary=_summary(loaded, card.get("parameters")),
        data=f"Trained and tested on {_source(config, card, data_name)}." + ("" if folder else f" {SHAPES}"),
        command=command,
        limits=(
            "Boxes leave the graph as dense maps: the peak search and NMS run afterwards (`boxes.decode`;"
            " `detector.export.OnnxDetector` runs both on ONNX Runtime), so a runtime of your own must reimplement"
            " them. The mAP is one run's, on the test split of its own data: expect less on images from elsewhere."
            f" It knows its {len(loaded.classes)} classes and no others. The weights inherit the terms of use of"
            " the data they were trained on."
        ),
    )


def _source(config: dict, card: dict, data_name: str) -> str:
    """The data, as a card says it: the synthetic shapes by their settings (a run's card.json may name the cache
    folder they were drawn into, a path of the training machine), a COCO folder as the run recorded it."""
    if config.get("data"):
        return card.get("source", data_name)
    return f"synthetic shapes ({config.get('shapes_train')} images of {config.get('image_size')} px, split seed {config.get('split_seed')})"


def _summary(loaded: LoadedDetector, parameters: int | None) -> str:
    size = loaded.image_size
    return (
        f"An anchor-free CenterNet-style detector{f' ({parameters:,} parameters)' if parameters else ''} trained by"
        " the `detector` project of PyTorch Capstones, exported to ONNX as `model.onnx`. Input `images`: [0, 1]"
        f" pixels [B, 3, {size}, {size}] (the longer side resized to {size}, then padded to a square); outputs:"
        f" `heatmap` (centre probabilities, one map per class: {', '.join(loaded.classes)}), `size` and `offset`,"
        f" at stride {loaded.model.cfg.stride}. `card.json` beside it lists the classes and how to decode. In PyTorch,"
        " `detector.model.CenterNet.from_pretrained(FOLDER or repo id)` rebuilds the network from config.json and"
        " loads model.safetensors; `detector.boxes.decode` turns its maps into boxes."
    )
