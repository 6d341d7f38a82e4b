"""Throughput: training images/s (forward + backward + AdamW step) and inference images/s for PyTorch eager,
ONNX Runtime fp32 and ONNX Runtime int8, at one batch size. Benchmarks are scripts, never timed tests.

    uv run classifier bench --profile    # then where the training step's time goes: trace.json + top_ops.txt
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

from dlshared.profiling import profile_folder, profile_steps
from dlshared.runs import latest_run

from .artifacts import load_torch_model
from .config import PRESETS, BenchArgs
from .export import calibration_batches, export_onnx, quantize_int8
from .model import build_model

WARMUP = 5


def _images_per_s(step, batch_size: int, steps: int) -> float:
    for _ in range(WARMUP):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch_size * steps / (time.perf_counter() - start)


def bench(args: BenchArgs) -> dict:
    profile_out = profile_folder("classifier", args.profile, args.profile_out, args.runs)
    run_dir = args.ckpt or latest_run("classifier", args.runs)
    if run_dir is not None:
        model, cfg, card = load_torch_model(Path(run_dir), "cpu")
    else:  # no run yet: time a freshly initialised quick-preset model on digits-shaped input
        cfg = PRESETS["quick"]
        card = {"image_size": cfg.image_size, "in_channels": 1, "classes": [str(i) for i in range(10)]}
        model = build_model(cfg.backbone, 10, 1, (0.5,), (0.25,), cfg.widths, cfg.blocks).eval()
    b, size, k = args.batch_size, card["image_size"], len(card["classes"])
    images, labels = torch.rand(b, card["in_channels"], size, size), torch.randint(0, k, (b,))
    result = {
        "batch_size": b,
        "threads": torch.get_num_threads(),
        "run": str(run_dir) if run_dir else None,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
    }

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def train_step():
        loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    result["train_images_per_s"] = round(_images_per_s(train_step, b, args.train_steps), 1)
    if profile_out is not None:  # after the timing: the profiler slows the steps it records
        result["profile"] = profile_steps(train_step, profile_out)
    if run_dir is not None:  # the timing steps changed the weights: reload the trained ones for export
        model, cfg, card = load_torch_model(Path(run_dir), "cpu")
    model.eval()
    with torch.inference_mode():
        result["pytorch_images_per_s"] = round(_images_per_s(lambda: model(images), b, args.infer_batches), 1)

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, card, Path(tmp) / "model.onnx")
        calib = calibration_batches(cfg, 4) if run_dir else [images.numpy()]
        int8 = quantize_int8(fp32, Path(tmp) / "model.int8.onnx", calib)
        feed = {"images": images.numpy()}
        for name, path in (("onnx_fp32", fp32), ("onnx_int8", int8)):
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            speed = _images_per_s(lambda s=session: s.run(None, feed), b, args.infer_batches)
            result[f"{name}_images_per_s"] = round(speed, 1)
            result[f"{name}_bytes"] = path.stat().st_size
    return result
