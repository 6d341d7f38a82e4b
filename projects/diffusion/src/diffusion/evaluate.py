"""The metric, defined once: a judge trained by the project on the real training split scores samples.

- accuracy: the share of samples the judge classifies as the class that was asked for;
- FID and KID (torchmetrics) between samples and the held-out real images, on the judge's penultimate features
  (Inception features mean little for 16x16 grayscale digits; a domain classifier's features are the usual
  substitute, e.g. the LeNet features of MNIST FID). KID is unbiased, so it suits a few hundred samples better.

Every generator here (diffusion with any sampler, the VAE, the GAN) is scored by the same judge and reference.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from dlshared.checkpoint import load_weights, save_json, save_weights
from dlshared.seed import seed_everything

from .config import PROJECT, DataConfig
from .data import DataBundle
from .model import Judge

JUDGE_EPOCHS = 30
CONFIDENT = 0.8
"""A sample is judged confidently right when the judge gives the requested class at least this probability."""


def judge_folder(cfg: DataConfig, root: Path) -> Path:
    """Judges are cached per data source/size/split (not per run), so every model is scored by the same one."""
    key = json.dumps([str(cfg.data), cfg.dataset, cfg.image_size, cfg.channels, cfg.test_fraction, cfg.split_seed])
    return Path(root) / PROJECT / "judges" / hashlib.sha1(key.encode()).hexdigest()[:10]


def jitter(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by up to 1/8 of its side (the judge should not depend on exact placement)."""
    size = images.shape[-1]
    pad = max(1, size // 8)
    padded = F.pad(images, (pad,) * 4, value=-1.0)
    dx, dy = torch.randint(0, 2 * pad + 1, (2,), generator=generator).tolist()
    return padded[..., dy : dy + size, dx : dx + size]


def train_judge(data: DataBundle, epochs: int | None = None, seed: int = 0) -> tuple[Judge, float]:
    """A small CNN on the real training split; returns it (eval mode) and its accuracy on the held-out split."""
    epochs = epochs or JUDGE_EPOCHS  # read at call time: tests shorten it
    seed_everything(seed)
    judge = Judge(len(data.classes), data.train_images.shape[1])
    optimizer = torch.optim.AdamW(judge.parameters(), lr=3e-3, weight_decay=1e-4)
    steps_per_epoch = (len(data.train_images) + 63) // 64
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-3, total_steps=epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        judge.train()
        order = torch.randperm(len(data.train_images), generator=generator)
        for batch in order.split(64):
            images = jitter(data.train_images[batch], generator)
            loss = F.cross_entropy(judge(images), data.train_labels[batch], label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    judge.eval()
    return judge, classify_accuracy(judge, data.test_images, data.test_labels)


@torch.no_grad()
def classify_accuracy(judge: Judge, images: torch.Tensor, labels: torch.Tensor) -> float:
    predictions = torch.cat([judge(b.float()).argmax(1) for b in images.cpu().split(500)])
    return (predictions == labels.cpu()).float().mean().item()


def load_or_train_judge(cfg: DataConfig, data: DataBundle, root: Path = Path("runs")) -> Judge:
    """The cached judge for this data, trained (~1 min on 2 cores) the first time."""
    folder = judge_folder(cfg, root)
    judge = Judge(len(data.classes), data.train_images.shape[1])
    if (folder / "judge.safetensors").is_file():
        return load_weights(judge, folder / "judge.safetensors").eval()
    judge, accuracy = train_judge(data)
    save_weights(judge, folder / "judge.safetensors")
    save_json({"test_accuracy": accuracy, "classes": data.classes, "epochs": JUDGE_EPOCHS}, folder / "judge.json")
    print(f"judge trained: {accuracy:.4f} accuracy on {len(data.test_images)} held-out real images ({folder})")
    return judge


class JudgeFeatures(nn.Module):
    """The judge's penultimate features, the feature extractor handed to torchmetrics' FID/KID."""

    def __init__(self, judge: Judge):
        super().__init__()
        self.judge = judge
        self.num_features = judge.num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.judge.features(images.float()).double()


@torch.no_grad()
def score_samples(
    judge: Judge, samples: torch.Tensor, requested: torch.Tensor, reference: torch.Tensor
) -> dict[str, float]:
    """samples, reference: [N, C, H, W] in [-1, 1]; requested: [N] class ids (or None for unconditional models).

    Returns accuracy, the judge's mean probability of the requested class (confidence) and the share of samples
    where it is >= CONFIDENT (confident), FID, KID (mean and std over subsets).
    """
    judge = judge.eval().cpu()
    samples, reference = samples.float().cpu(), reference.float().cpu()
    probs = torch.cat([judge(b).softmax(1) for b in samples.split(500)])
    metrics: dict[str, float | None] = {"samples": len(samples)}
    if requested is not None:
        requested = requested.cpu()
        metrics["accuracy"] = (probs.argmax(1) == requested).float().mean().item()
        p_requested = probs.gather(1, requested[:, None])[:, 0]
        metrics["confidence"] = p_requested.mean().item()
        # accuracy alone passes a noisy sample whose faint digit still wins the argmax; a confident verdict does
        # not (the judge, trained with label smoothing 0.1, gives clean real digits ~0.91)
        metrics["confident"] = (p_requested >= CONFIDENT).float().mean().item()
    features = JudgeFeatures(judge)
    fid = FrechetInceptionDistance(feature=features, normalize=True)
    subset = min(100, len(samples), len(reference))
    with warnings.catch_warnings():  # "will save all extracted features": a few hundred 128-d vectors here
        warnings.filterwarnings("ignore", message=".*will save all extracted features")
        kid = KernelInceptionDistance(feature=features, normalize=True, subset_size=subset, subsets=50)
    for metric in (fid, kid):
        for batch in reference.split(500):
            metric.update(batch, real=True)
        for batch in samples.split(500):
            metric.update(batch, real=False)
    with torch.random.fork_rng():  # KID draws its subsets from the global RNG: the same samples, the same KID
        torch.manual_seed(0)
        kid_mean, kid_std = kid.compute()
    metrics.update({"fid": fid.compute().item(), "kid": kid_mean.item(), "kid_std": kid_std.item()})
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in metrics.items()}


def balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    """0, 1, ..., K-1, 0, 1, ...: n requested classes, as equal in number as n allows."""
    return torch.arange(n) % num_classes


def evaluate_pipeline(
    pipe, judge: Judge, data: DataBundle, sampler: str, steps: int, guidance: float, n: int, seed: int = 0
) -> tuple[dict, torch.Tensor]:
    """The diffusion model's score: n samples (the classes in turn) drawn with `sampler` (pipeline.py), judged.
    At the end of training (train.py) and by `diffusion eval`, which also draws them (samples.png): returns the
    scores and the samples ([n, C, H, W] in [0, 1])."""
    requested = balanced_labels(n, len(data.classes))
    started = time.perf_counter()
    samples = pipe(requested, steps, guidance, torch.Generator().manual_seed(seed), sampler=sampler).images
    seconds = time.perf_counter() - started
    scores = score_samples(judge, samples * 2 - 1, requested, data.test_images)
    setting = {"scheduler": sampler, "steps": steps, "guidance": guidance, "seed": seed}
    return {**setting, **scores, "sampling_seconds": round(seconds, 1), "samples_per_s": round(n / seconds, 2)}, samples


def draw_balanced(sample: Callable, n: int, num_classes: int, seed: int = 0) -> torch.Tensor:
    """n samples of the classes in turn from `sample(labels, generator)` ([-1, 1]), in batches of 500. One generator
    seeded once: the same noise for every evaluation of a run."""
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([sample(labels, generator) for labels in balanced_labels(n, num_classes).split(500)])


def score_generator(sample: Callable, judge: Judge, data: DataBundle, n: int, seed: int = 0) -> dict:
    """The baselines' score: n samples of balanced classes from `sample(labels, generator)` ([-1, 1]), judged."""
    samples = draw_balanced(sample, n, len(data.classes), seed)
    return score_samples(judge, samples, balanced_labels(n, len(data.classes)), data.test_images)


def real_data_floor(judge: Judge, data: DataBundle, n: int, seed: int = 0) -> dict[str, float]:
    """The same metrics for n real *training* images against the held-out ones: the best a generator can expect."""
    g = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(data.train_images), generator=g)[:n]
    return score_samples(judge, data.train_images[index], data.train_labels[index], data.test_images)
