"""Export (days 19-20): ONNX with a dynamic batch dimension, and a statically quantised int8 ONNX model.

Why ONNX and not TorchScript: TorchScript is in maintenance mode in PyTorch 2.x (torch.export is its successor)
and a TorchScript file still needs libtorch to run; ONNX runs on ONNX Runtime, TensorRT, OpenVINO, CoreML or in
the browser, and ORT's quantiser gives the int8 model below. Both files take [0, 1] pixels [B, C, H, W] and
return logits [B, K]: normalisation is inside the graph (see model.ImageClassifier).

Static QDQ quantisation: weights become int8 per output channel, and activation ranges are measured on a few
calibration batches of training images, so inference runs int8 convolutions end to end. (Dynamic quantisation
is the wrong tool for CNNs: ORT's ConvInteger path measured 5-10x slower than fp32 on this stack.)
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch.utils.data import DataLoader

from dlshared.checkpoint import read_json_object, save_json
from dlshared.configs import WHERE_FIELDS
from dlshared.hub import push_folder
from dlshared.modelcard import Result, train_command, write_model_card
from dlshared.outputs import staged_output

from .artifacts import TRAIN_CONFIG, find_run, load_torch_model
from .config import PRESETS, ExportArgs, TrainConfig
from .data import load_data


def export_onnx(model: torch.nn.Module, card: dict, path: Path) -> Path:
    """fp32 ONNX, batch dimension dynamic, weights inside the one file."""
    size, channels = card["image_size"], card["in_channels"]
    example = torch.rand(2, channels, size, size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(
        model.cpu().eval(),
        (example,),
        dynamo=True,
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes={"images": {0: batch}},
        verbose=False,
    )
    program.save(str(path), external_data=False)
    return path


class CalibrationBatches(CalibrationDataReader):
    """Feeds ORT's calibrator a few batches of training images (what the model will see in use)."""

    def __init__(self, batches: list[np.ndarray], input_name: str = "images"):
        self._items = iter([{input_name: b} for b in batches])

    def get_next(self):
        return next(self._items, None)


def quantize_int8(fp32_path: Path, path: Path, batches: list[np.ndarray]) -> Path:
    reader = CalibrationBatches(batches)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)  # folds BN, infers shapes
        quantize_static(
            str(prepared),
            str(path),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            # 7-bit weights: without AVX-512 VNNI, ONNX Runtime's u8 x s8 kernel (VPMADDUBSW) saturates its 16-bit
            # sums, which cost this model 1.7 points on an AVX2-only CPU; 7 bits cannot overflow on any x86
            reduce_range=True,
        )
    return path


def calibration_batches(run_cfg, n_batches: int, batch_size: int = 32) -> list[np.ndarray]:
    data = load_data(dataclasses.replace(run_cfg, augment=False))  # calibrate on clean images
    loader = DataLoader(data.train, batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    batches = []
    for images, _ in loader:
        batches.append(images.numpy().astype(np.float32))
        if len(batches) == n_batches:
            break
    return batches


def export(args: ExportArgs) -> dict:
    """ONNX (and int8 ONNX) of a run plus the Hub's safetensors + config.json, written into a staging folder that
    becomes --out when complete; then, with --push-to-hub, uploaded as it is."""
    run_dir = find_run(args.ckpt)
    model, cfg, card = load_torch_model(run_dir, "cpu")
    out = Path(args.out or run_dir / "export").resolve()
    with staged_output(out, args.overwrite, sources=(run_dir,)) as stage:
        model.save_pretrained(stage)  # model.safetensors + config.json: what Classifier.from_pretrained reads
        # eval/demo of an .onnx file read these beside it (config.json is the Hub's, so the run's is renamed)
        shutil.copyfile(run_dir / "config.json", stage / TRAIN_CONFIG)
        shutil.copyfile(run_dir / "card.json", stage / "card.json")
        fp32 = export_onnx(model, card, stage / "model.onnx")
        sizes = {"onnx_bytes": fp32.stat().st_size}
        if args.format in ("int8", "all"):
            batches = calibration_batches(cfg, args.calibration_batches)
            sizes["int8_bytes"] = quantize_int8(fp32, stage / "model.int8.onnx", batches).stat().st_size
            sizes["compression"] = round(sizes["onnx_bytes"] / sizes["int8_bytes"], 2)
        if args.format == "int8":
            fp32.unlink()
        files = {"onnx": out / "model.onnx", "int8": out / "model.int8.onnx"}
        result = {"out": str(out), **{k: str(f) for k, f in files.items() if (stage / f.name).exists()}, **sizes}
        save_json({**result, "source_run": str(run_dir), "metrics": _metrics(run_dir)}, stage / "export.json")
        write_card(stage, run_dir, cfg, card)  # after save_pretrained: replaces the mixin's generic README.md
    if args.push_to_hub:
        result["pushed"] = push_folder(out, args.push_to_hub)
    return result


def _metrics(run_dir: Path) -> dict | None:
    path = run_dir / "metrics.json"
    return {k: v for k, v in read_json_object(path).items() if k != "test"} if path.is_file() else None


HUB_TAGS = ("pytorch-capstones", "model_hub_mixin", "pytorch_model_hub_mixin")
"""The tags huggingface_hub's PyTorchModelHubMixin gives the models it saves, so the Hub lists them as such."""

DATASETS = {"digits": ("sklearn-digits", "scikit-learn digits"), "cifar10": ("uoft-cs/cifar10", "CIFAR-10")}
"""Resolved --dataset -> (dataset id: the Hub's where it has one, the name a reader knows)."""


def write_card(stage: Path, run_dir: Path, cfg: TrainConfig, card: dict) -> Path:
    """README.md in the Hub's format (dlshared.modelcard), from the run's config.json, card.json and metrics.json."""
    metrics = read_json_object(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else {}
    data_id, data_name = DATASETS.get(cfg.resolved_dataset()) or (Path(cfg.data).name, f"ImageFolder {cfg.data}")
    accuracy = metrics.get("test_accuracy")
    results = [] if accuracy is None else [Result("image-classification", data_id, data_name, "accuracy", accuracy)]
    command = train_command(
        "classifier",
        read_json_object(run_dir / "config.json"),
        PRESETS,
        "quick",
        ignore=(*WHERE_FIELDS, "progress", "log_every", "stats_every"),  # none of these changes the weights
        processes=metrics.get("processes", 1),
    )
    return write_model_card(
        stage,
        title=f"classifier: {card['backbone']} on {data_name}",
        library_name="pytorch",
        pipeline_tag="image-classification",
        tags=[*HUB_TAGS, "image-classification", "onnx", card["backbone"].removeprefix("timm/")],
        datasets=[data_id],
        license="mit",
        results=results,
        summary=_summary(stage, card, metrics),
        data=_data(cfg, card, metrics),
        command=command,
        limits=_limits(cfg, card, int8=(stage / "model.int8.onnx").is_file()),
    )


def _summary(stage: Path, card: dict, metrics: dict) -> str:
    classes, size, channels = card["classes"], card["image_size"], card["in_channels"]
    files = sorted((f.name for f in stage.glob("*.onnx")), key=lambda name: (name != "model.onnx", name))  # fp32 first
    parameters = card.get("parameters") or metrics.get("parameters")
    return (
        f"A {card['backbone']} image classifier{f' ({parameters:,} parameters)' if parameters else ''} trained by"
        f" the `classifier` project of PyTorch Capstones, exported to ONNX: {', '.join(f'`{f}`' for f in files)}."
        f" Input `images`: [0, 1] pixels [B, {channels}, {size}, {size}] (the normalisation is inside the graph);"
        f" output `logits`: [B, {len(classes)}], over the classes {_listed(classes)}."
        f" `uv run classifier eval --ckpt FOLDER/{files[0]}` scores it again with ONNX Runtime (it reads the"
        f" {TRAIN_CONFIG} and card.json beside it). In PyTorch, `classifier.model.Classifier.from_pretrained(FOLDER"
        " or repo id)` rebuilds the network from config.json and loads model.safetensors; its `classes` name the"
        " logits."
    )


def _data(cfg: TrainConfig, card: dict, metrics: dict) -> str:
    text = f"Trained and tested on {card.get('source', cfg.resolved_dataset())}; the model sees {card['image_size']} px images."
    if "test" in metrics:
        text += f" The test split ({metrics['test']['samples']} images) was used for neither training nor model choice."
    if cfg.max_train_samples:
        text += f" Training used {cfg.max_train_samples} of the training images (`--max-train-samples`)."
    return text


def _limits(cfg: TrainConfig, card: dict, int8: bool) -> str:
    digits = " (clean, centred scans of digits, not photographs)" if cfg.resolved_dataset() == "digits" else ""
    calibration = (
        " The int8 model's activation ranges come from a few training batches; score it with `eval` before relying"
        " on it."
    )
    return (
        f"It always answers one of its {len(card['classes'])} classes, even for an image of none of them, and its"
        " softmax scores are not calibrated probabilities. The accuracy is one run's, measured on images from the"
        f" source it was trained on{digits}: expect less on images from elsewhere.{calibration if int8 else ''}"
        " The weights inherit the terms of use of the data they were trained on."
    )


def _listed(names: list[str], most: int = 20) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")
