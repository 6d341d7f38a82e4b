"""CLIP (Radford et al. 2021) as open_clip builds it, and the contrastive loss written out (course day 37).

Two towers map an image and a caption into the same space; training pulls each image towards its own caption
and away from every other caption of the batch, and the same for captions. Shapes: B a batch, D the shared
embedding width, T the caption length in tokens.

    image [B, 3, H, W] --vision tower--> [B, D] --L2 norm--\
                                                            >-- logits [B, B] = scale * img @ txt.T
    text  [B, T] ------ text tower ----> [B, D] --L2 norm--/

nn.Modules and pure functions only: no files, no data.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from dlshared.cli import UserError

MODEL_CONFIGS = Path(__file__).parent / "model_configs"
"""open_clip model configs of this project (clip-tiny.json, ...), registered with open_clip by name."""


def build_clip(name: str, pretrained: str | None = None):
    """(model, image preprocessing for evaluation, tokenizer) from open_clip.

    `name` is one of this project's configs (clip-tiny, clip-small: built from scratch) or any open_clip model
    (ViT-B-32, ...) with `pretrained` a tag such as laion2b_s34b_b79k, which open_clip downloads (online only).
    """
    import logging

    import open_clip

    open_clip.add_model_config(MODEL_CONFIGS)
    quiet = logging.ERROR if pretrained is None else logging.NOTSET  # "no pretrained weights loaded": we know
    logging.disable(quiet)
    if name not in open_clip.list_models():
        raise UserError(f"--model {name}: not an open_clip model; this project's are clip-tiny and clip-small")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
    except RuntimeError as err:  # an unknown pretrained tag, or no network to download the weights
        raise UserError(f"--model {name} --pretrained {pretrained}: {str(err).splitlines()[0][:200]}") from None
    finally:
        logging.disable(logging.NOTSET)
    tokenizer = open_clip.get_tokenizer(name)
    return model, preprocess, tokenizer


def image_size(model) -> int:
    """The side of the square images the model's image tower takes (open_clip keeps it as an int or a pair)."""
    size = model.visual.image_size
    return size[0] if isinstance(size, (tuple, list)) else size


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor):
    """CLIP's symmetric InfoNCE loss; features [B, D], L2-normalised; logit_scale = exp(learned log-temperature).

    Row i of the logits scores image i against every caption of the batch; its target is caption i. Cross-entropy
    over rows (image -> text) and over columns (text -> image), averaged. The temperature is learned: a larger
    scale sharpens the softmax; open_clip clamps it at 100 (train.py does the same after each step).
    """
    logits_per_image = logit_scale * image_features @ text_features.T  # [B, B]
    logits_per_text = logits_per_image.T  # [B, B]: caption i against every image
    targets = torch.arange(len(image_features), device=image_features.device)  # [B] the diagonal
    return (F.cross_entropy(logits_per_image, targets) + F.cross_entropy(logits_per_text, targets)) / 2
