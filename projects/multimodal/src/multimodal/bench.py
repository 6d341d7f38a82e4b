"""`multimodal bench`: how fast a trained CLIP embeds, in PyTorch and ONNX Runtime, and how fast faiss searches.

    uv run multimodal bench --ckpt runs/multimodal/NAME

Embedding: images/s and texts/s at batch 64, after a warm-up, both runtimes on the same inputs. Search: an exact
inner-product index (faiss IndexFlatIP, what `index` builds) of 1k and 100k random unit vectors of the model's
width: build time and the latency of one query (median of 200), which is what the demo waits for.

    uv run multimodal bench --profile   # then a contrastive training step under torch.profiler: trace.json, top_ops

The bench times no training; the profile is of train.py's step (both towers, the loss, backward, AdamW) on random
images and one caption, at the run's batch size: the embedding timed above is its forward half.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import torch

from dlshared.profiling import profile_folder, profile_steps

from .artifacts import find_run, load_run
from .config import ExportArgs
from .export import export
from .model import contrastive_loss, image_size


def per_second(fn, items: int, repeats: int = 5) -> float:
    fn()  # warm-up: first calls allocate and (ONNX Runtime) optimise the graph
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return round(items * repeats / (time.perf_counter() - started), 1)


def bench(args) -> dict:
    import onnxruntime as ort

    profile_out = profile_folder("multimodal", args.profile, args.profile_out, args.runs)
    run_dir = find_run(args.ckpt, args.runs)
    run = load_run(run_dir, "cpu")
    size = image_size(run.model)
    images = torch.rand(64, 3, size, size)
    tokens = run.tokenizer(["two small red circles left of a blue triangle"] * 64)
    result = {"model": run.config.model, "batch": 64, "threads": torch.get_num_threads()}
    with torch.no_grad():
        result["torch_images_per_s"] = per_second(lambda: run.model.encode_image(images), 64)
        result["torch_texts_per_s"] = per_second(lambda: run.model.encode_text(tokens), 64)
    with tempfile.TemporaryDirectory() as tmp:
        files = export(ExportArgs(ckpt=run_dir, runs=args.runs, out=Path(tmp) / "onnx"))  # the verb's defaults
        image_session = ort.InferenceSession(files["image_encoder"])
        text_session = ort.InferenceSession(files["text_encoder"])
        result["onnx_images_per_s"] = per_second(lambda: image_session.run(None, {"images": images.numpy()}), 64)
        result["onnx_texts_per_s"] = per_second(lambda: text_session.run(None, {"tokens": tokens.numpy()}), 64)

    dim, rng = int(run.model.text_projection.shape[1]), np.random.default_rng(0)
    for n in (1_000, 100_000):
        vectors = rng.standard_normal((n, dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        started = time.perf_counter()
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        result[f"index_build_ms_{n}"] = round((time.perf_counter() - started) * 1e3, 2)
        latencies = []
        for query in vectors[:200]:
            started = time.perf_counter()
            index.search(query[None], 10)
            latencies.append((time.perf_counter() - started) * 1e3)
        result[f"query_ms_{n}"] = round(statistics.median(latencies), 3)
    for key, value in result.items():
        print(f"{key:>24}: {value}")
    if profile_out is not None:  # last: the steps change the weights the timings used
        result["profile"] = profile_steps(training_step(run, size), profile_out)
    return result


def training_step(run, size: int):
    """One contrastive step of train.py on the run's model, at its batch size: random images, one caption."""
    batch = run.config.batch_size
    images = torch.rand(batch, 3, size, size)
    tokens = run.tokenizer(["two small red circles left of a blue triangle"] * batch)
    model = run.model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=run.config.lr)

    def step() -> None:
        image_features, text_features, logit_scale = model(images, tokens)  # [B, D] x2, []
        contrastive_loss(image_features, text_features, logit_scale).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step
