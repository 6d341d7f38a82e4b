"""`multimodal export`: the two towers as ONNX files, each a function from inputs to normalised embeddings.

    image_encoder.onnx   images [B, 3, H, W] float32 (open_clip's preprocessing) -> embeddings [B, D]
    text_encoder.onnx    tokens [B, T] int64 (open_clip's tokenizer, T = context length) -> embeddings [B, D]

Both with a dynamic batch; cosine similarity is then a dot product, and zero-shot or search needs nothing but
ONNX Runtime and the tokenizer. export.json records the model, sizes and the learned logit scale.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from dlshared.checkpoint import read_json_object, save_json
from dlshared.configs import WHERE_FIELDS
from dlshared.hub import push_folder
from dlshared.modelcard import Result, train_command, write_model_card
from dlshared.outputs import staged_output

from .artifacts import ClipRun, find_run, load_run
from .config import PRESETS, ExportArgs
from .model import image_size


class ImageEncoder(nn.Module):
    def __init__(self, clip: nn.Module):
        super().__init__()
        self.clip = clip

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.clip.encode_image(images), dim=-1)  # [B, 3, H, W] -> [B, D]


class TextEncoder(nn.Module):
    def __init__(self, clip: nn.Module):
        super().__init__()
        self.clip = clip

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.clip.encode_text(tokens), dim=-1)  # [B, T] -> [B, D]


def to_onnx(module: nn.Module, example: torch.Tensor, input_name: str, path: Path) -> Path:
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(
        module.eval(),
        (example,),
        dynamo=True,
        input_names=[input_name],
        output_names=["embeddings"],
        dynamic_shapes={input_name: {0: batch}},
        verbose=False,
    )
    program.save(str(path), external_data=False)
    return path


def export(args: ExportArgs) -> dict:
    """Both towers of a run as ONNX, written into a staging folder that becomes --out when complete."""
    run = load_run(find_run(args.ckpt, args.runs), "cpu")
    size = image_size(run.model)
    context = run.tokenizer.context_length
    out = Path(args.out or run.dir / "export").resolve()
    with staged_output(out, args.overwrite, sources=(run.dir,)) as stage:
        shutil.copyfile(run.dir / "config.json", stage / "config.json")
        to_onnx(ImageEncoder(run.model), torch.rand(2, 3, size, size), "images", stage / "image_encoder.onnx")
        tokens = run.tokenizer(["a caption", "another caption here"])  # [2, context]
        to_onnx(TextEncoder(run.model), tokens, "tokens", stage / "text_encoder.onnx")
        card = {
            "model": run.config.model,
            "image_size": size,
            "context_length": context,
            "embed_dim": int(run.model.text_projection.shape[1]),
            "logit_scale": round(run.model.logit_scale.exp().item(), 6),
            "source_run": str(run.dir),
        }
        save_json(card, stage / "export.json")
        write_card(stage, run, card)
    files = {"image_encoder": str(out / "image_encoder.onnx"), "text_encoder": str(out / "text_encoder.onnx")}
    result = {"out": str(out), **files, **card}
    if args.push_to_hub:  # only a complete folder: staged_output has renamed it into place
        result["pushed"] = push_folder(out, args.push_to_hub)
    return result


RECALLS = (("image_to_text_r1", "recall@1, image to text"), ("text_to_image_r1", "recall@1, text to image"))
SCENES = (
    'Scenes drawn by the project\'s `scenes.py`, captioned like "two large green squares left of a yellow circle".'
    " Some colour-shape pairs never appear in training: the `unseen` test split holds them, so it measures whether"
    " the model composes what it learnt rather than recalling pairs it saw."
)


def write_card(stage: Path, run: ClipRun, export: dict) -> Path:
    """README.md in the Hub's format (dlshared.modelcard), from the run's config.json and metrics.json."""
    config = read_json_object(run.dir / "config.json")
    metrics = read_json_object(run.dir / "metrics.json") if (run.dir / "metrics.json").is_file() else {}
    folder = config.get("data")
    data_id, data_name = (Path(folder).stem, str(folder)) if folder else ("capstones-scenes", "embedded scenes")
    return write_model_card(
        stage,
        title=f"multimodal: {run.config.model} on {data_name}",
        library_name="onnx",
        pipeline_tag="zero-shot-image-classification",
        tags=["pytorch-capstones", "clip", "open_clip", "onnx", "zero-shot-image-classification"],
        datasets=[data_id],
        license="mit",
        results=_results(metrics.get("test") or {}, data_id, data_name),
        summary=(
            f"A CLIP model ({run.config.model}, {metrics.get('parameters', 0):,} parameters) trained contrastively"
            " by the `multimodal` project of PyTorch Capstones, exported as two ONNX towers: `image_encoder.onnx`"
            f" (images [B, 3, {export['image_size']}, {export['image_size']}], open_clip's preprocessing) and"
            f" `text_encoder.onnx` (tokens [B, {export['context_length']}], open_clip's tokenizer), each returning"
            f" unit-length embeddings [B, {export['embed_dim']}]: their dot product is the cosine similarity."
        ),
        data=f"Trained and tested on {metrics.get('data', data_name)}." + ("" if folder else f" {SCENES}"),
        command=train_command(
            "multimodal",
            config,
            PRESETS,
            "quick",
            ignore=(*WHERE_FIELDS, "progress", "log_every"),  # none of these changes the weights
            processes=metrics.get("processes", 1),
        ),
        limits=(
            "It knows the words and pictures of its training pairs only: captions outside that vocabulary, or"
            " photographs, when it was trained on drawn scenes, get embeddings that mean little. Zero-shot labels"
            " are the nearest caption, not calibrated probabilities. The weights inherit the terms of use of the"
            " data they were trained on."
        ),
    )


def _results(tests: dict, data_id: str, data_name: str) -> list[Result]:
    """Recall@1 both ways and the mean zero-shot accuracy of every test split (seen and unseen pairs, or one)."""
    task, results = "zero-shot-image-classification", []
    for split, scores in tests.items():
        name = "test" if split == "test" else f"test-{split}"
        for key, label in RECALLS:
            if key in scores:
                results.append(Result(task, data_id, data_name, key, scores[key], label, name))
        if "zero_shot_mean" in scores:
            label = "zero-shot accuracy, mean over attributes"
            results.append(Result(task, data_id, data_name, "zero_shot_mean", scores["zero_shot_mean"], label, name))
    return results
