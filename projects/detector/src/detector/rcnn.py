"""torchvision's two-stage detectors, Faster R-CNN and Mask R-CNN, as baselines beside the CenterNet: the same
data, training loop (train.py) and metric (evaluate.py), so their numbers sit in one table.

    fasterrcnn_mobilenet  MobileNetV3-Large FPN backbone, boxes              (COCO weights with --pretrained)
    maskrcnn_mobilenet    MobileNetV3-Large FPN backbone, boxes + masks      (ImageNet backbone with --pretrained;
                                                                             torchvision has no COCO weights for it)
    fasterrcnn_resnet50   ResNet-50 FPN, boxes                               (COCO weights with --pretrained)
    maskrcnn_resnet50     ResNet-50 FPN, boxes + masks                       (COCO weights with --pretrained)

Offline, weights=None: every layer trains from scratch with ordinary BatchNorm, as torchvision's builders do
without weights. With --pretrained the weights are downloaded once (torch hub cache) and the class heads replaced
for this dataset's classes, as in torchvision's fine-tuning tutorial.

Some settings differ from torchvision's defaults, because those are made for ~800-pixel COCO images with up to
~100 objects: the internal resize is turned off (min_size = max_size = the project's image size, so images stay
as the loader made them); the anchor sizes are scaled by image_size / 512 (32..512 px -> 8..128 px for 128-pixel
images); and for images of at most 320 pixels the proposal counts are cut as in torchvision's own
fasterrcnn_mobilenet_v3_large_320_fpn (150 proposals at test time), with 128 sampled regions per training image
instead of 512. The last is a speed choice: the box head's 12544 x 1024 layer on 512 regions of 32 images made
training 4x slower (1.8 images/s for the MobileNet Faster R-CNN on 2 cores) with scenes of 1-4 objects.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.models import MobileNet_V3_Large_Weights
from torchvision.models.detection import (
    FasterRCNN,
    MaskRCNN,
    fasterrcnn_mobilenet_v3_large_fpn,
    fasterrcnn_resnet50_fpn,
    maskrcnn_resnet50_fpn,
)
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import mobilenet_backbone
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor
from torchvision.ops import misc as misc_nn_ops

from dlshared.cli import UserError

SMALL_IMAGE_SETTINGS = dict(
    rpn_pre_nms_top_n_train=1000,
    rpn_post_nms_top_n_train=500,
    rpn_pre_nms_top_n_test=150,
    rpn_post_nms_top_n_test=150,
    box_batch_size_per_image=128,
)
ARCHS = ("fasterrcnn_mobilenet", "maskrcnn_mobilenet", "fasterrcnn_resnet50", "maskrcnn_resnet50")
MASK_THRESHOLD = 0.5
"""Mask R-CNN predicts a probability per pixel; a pixel belongs to the object above this, as in COCO's tools."""


def build_rcnn(arch: str, num_classes: int, image_size: int, pretrained: bool = False) -> FasterRCNN:
    """A torchvision R-CNN for `num_classes` classes *including* background (label 0)."""
    if arch not in ARCHS:
        raise UserError(f"unknown model {arch!r}; choose centernet or one of {', '.join(ARCHS)}")
    sizes = dict(min_size=image_size, max_size=image_size)
    if image_size <= 320:
        sizes |= SMALL_IMAGE_SETTINGS
    try:
        if arch == "maskrcnn_mobilenet":  # no builder in torchvision: its Faster R-CNN recipe + a mask head
            backbone = mobilenet_backbone(
                backbone_name="mobilenet_v3_large",
                weights=MobileNet_V3_Large_Weights.DEFAULT if pretrained else None,
                fpn=True,
                trainable_layers=3 if pretrained else 6,
                norm_layer=misc_nn_ops.FrozenBatchNorm2d if pretrained else nn.BatchNorm2d,
            )
            anchors = AnchorGenerator(((32, 64, 128, 256, 512),) * 3, ((0.5, 1.0, 2.0),) * 3)
            model = MaskRCNN(backbone, num_classes, rpn_anchor_generator=anchors, **sizes)
        else:
            builder = {
                "fasterrcnn_mobilenet": fasterrcnn_mobilenet_v3_large_fpn,
                "fasterrcnn_resnet50": fasterrcnn_resnet50_fpn,
                "maskrcnn_resnet50": maskrcnn_resnet50_fpn,
            }[arch]
            if pretrained:
                model = builder(weights="DEFAULT", **sizes)
                _replace_class_heads(model, num_classes)
            else:
                model = builder(weights=None, weights_backbone=None, num_classes=num_classes, **sizes)
    except OSError as err:  # a failed download: urllib's URLError and socket errors are OSErrors
        raise UserError(
            f"cannot download the pretrained weights of {arch} ({err}); train without --pretrained offline"
        ) from None
    _scale_anchors(model.rpn.anchor_generator, image_size / 512)
    return model


def _replace_class_heads(model: FasterRCNN, num_classes: int) -> None:
    box_in = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(box_in, num_classes)
    if getattr(model.roi_heads, "mask_predictor", None) is not None:
        model.roi_heads.mask_predictor = MaskRCNNPredictor(256, 256, num_classes)


def _scale_anchors(generator: AnchorGenerator, factor: float) -> None:
    """Same number of anchors per cell (so pretrained RPN weights still fit), sizes times `factor`."""
    generator.sizes = tuple(tuple(max(4.0, s * factor) for s in level) for level in generator.sizes)
    generator.cell_anchors = [
        generator.generate_anchors(s, r) for s, r in zip(generator.sizes, generator.aspect_ratios, strict=True)
    ]


def rcnn_losses(model: FasterRCNN, images: torch.Tensor, targets: list[dict]) -> dict[str, torch.Tensor]:
    """Training step: torchvision's models compute their own losses from the targets (RPN + box head [+ masks])."""
    masks = getattr(model, "module", model).roi_heads.has_mask()  # model may be wrapped in DDP
    wanted = ("boxes", "labels", "masks") if masks else ("boxes", "labels")
    device = images.device
    parts = model(list(images), [{k: t[k].to(device) for k in wanted} for t in targets])
    total = sum(parts.values())
    return {"loss": total, **{k.removeprefix("loss_"): v.detach() for k, v in parts.items()}}


@torch.no_grad()
def rcnn_detect(model: FasterRCNN, images: torch.Tensor, score_threshold: float, max_detections: int) -> list[dict]:
    """Inference: boxes, scores, labels, and for Mask R-CNN masks (N, H, W) bool, per image."""
    model.roi_heads.score_thresh, model.roi_heads.detections_per_img = score_threshold, max_detections
    detections = model(list(images))
    for d in detections:
        if "masks" in d:
            d["masks"] = d["masks"][:, 0] > MASK_THRESHOLD  # (N, 1, H, W) probabilities -> (N, H, W)
    return detections
