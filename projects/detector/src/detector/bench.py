"""`detector bench`: training and inference images/s of the CenterNet-style detector, PyTorch and ONNX Runtime.

Training: forward + loss + backward + AdamW step on real batches of the preset's data (targets encoded as in
training), after warm-up steps. Inference: forward + decoding (peak search and NMS) on a batch, in PyTorch and in
ONNX Runtime (the exported graph, decoded by the same code). Numbers are per process; report the thread count.
`--profile` then records the training step under torch.profiler (dlshared.profiling): trace.json + top_ops.txt.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from dlshared.cli import UserError
from dlshared.profiling import profile_folder, profile_steps

from .boxes import decode, detection_loss, encode
from .config import PRESETS, BenchArgs
from .data import collate, load_splits
from .export import OnnxDetector, export_onnx
from .model import DetectorConfig, build_detector


def timed(fn, steps: int, warmup: int) -> float:
    """Seconds per call of fn, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def bench(args: BenchArgs) -> dict:
    if args.preset not in PRESETS:
        raise UserError(f"unknown preset {args.preset!r}; choose one of: {', '.join(PRESETS)}")
    profile_out = profile_folder("detector", args.profile, args.profile_out)
    cfg = dataclasses.replace(PRESETS[args.preset], batch_size=args.batch_size, shapes_root=args.shapes_root)
    splits = load_splits(cfg)
    images, targets = next(iter(DataLoader(splits.train, args.batch_size, collate_fn=collate)))
    torch.manual_seed(0)
    model_cfg = DetectorConfig(len(splits.classes), tuple(cfg.widths), tuple(cfg.depths), cfg.fpn_width)
    model = build_detector("centernet", model_cfg, cfg.image_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    maps = encode(targets, len(splits.classes), cfg.image_size // model_cfg.stride, model_cfg.stride)

    def train_step() -> None:
        losses = detection_loss(model(images), maps)
        losses["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    train_s = timed(train_step, args.steps, args.warmup)
    profile = profile_steps(train_step, profile_out) if profile_out else None  # after the timing: it slows steps
    model.eval()

    @torch.no_grad()
    def infer_torch() -> None:
        decode(model(images), model_cfg.stride)

    torch_s = timed(infer_torch, args.steps, args.warmup)
    with tempfile.TemporaryDirectory() as tmp:
        onnx = OnnxDetector(export_onnx(model, cfg.image_size, Path(tmp) / "d.onnx"), model_cfg.stride)
        onnx_s = timed(lambda: onnx(images), args.steps, args.warmup)
    n = len(images)
    return {
        "preset": args.preset,
        "image_size": cfg.image_size,
        "batch_size": n,
        "train_images_per_s": round(n / train_s, 1),
        "infer_images_per_s_torch": round(n / torch_s, 1),
        "infer_images_per_s_onnxruntime": round(n / onnx_s, 1),
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
        "torch": torch.__version__,
    } | ({"profile": profile} if profile else {})
