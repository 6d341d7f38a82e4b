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

from dlshared.checkpoint import save_json
from dlshared.outputs import staged_output

from .artifacts import find_run, load_run
from .config import ExportArgs
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
    files = {"image_encoder": str(out / "image_encoder.onnx"), "text_encoder": str(out / "text_encoder.onnx")}
    return {"out": str(out), **files, **card}
