"""Diffusion written out by hand (course day 31): the noise schedule, the forward process q(x_t | x_0), the
training objective, and one reverse step of the DDPM and DDIM samplers.

This is the code that runs: train.py noises images and computes the loss with these functions, and the pipeline's
default samplers (pipeline.py, `--scheduler ddim` / `ddpm`) step with `ddim_step` / `ddpm_step`. diffusers'
schedulers remain on offer beside them (`diffusers-ddim`, `diffusers-ddpm`, `dpm`), and tests/test_schedule.py
checks that every function here, and the samplers built from them, equal diffusers'.

Notation of Ho et al. (2020): beta_t is the noise added at step t, alpha_t = 1 - beta_t,
alpha_bar_t = prod_{s<=t} alpha_s.
"""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import torch
import torch.nn.functional as F


def cosine_alpha_bar(s: float) -> float:
    """alpha_bar at time s in [0, 1] of the cosine schedule (Nichol & Dhariwal 2021): cos^2 of a slightly shifted s,
    so that the first steps add very little noise."""
    return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2


def make_betas(schedule: str, num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """beta_1..beta_T, float32 [T], as diffusers computes them for the same config."""
    if schedule == "linear":  # Ho et al. 2020
        return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float32)
    if schedule == "scaled_linear":  # Stable Diffusion's: linear in sqrt(beta)
        return torch.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=torch.float32) ** 2
    if schedule == "squaredcos_cap_v2":
        # beta_t = 1 - alpha_bar(t) / alpha_bar(t-1), capped at 0.999 so that no single step erases the image
        times = [i / num_timesteps for i in range(num_timesteps + 1)]
        betas = [min(1 - cosine_alpha_bar(now) / cosine_alpha_bar(before), 0.999) for before, now in pairwise(times)]
        return torch.tensor(betas, dtype=torch.float32)
    raise ValueError(f"unknown beta schedule {schedule!r}")


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """alpha_bar_t = prod_{s<=t} (1 - beta_s): the share of the signal's variance left at step t. [T]"""
    return torch.cumprod(1.0 - betas, dim=0)


def _per_sample(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] for each sample, shaped [B, 1, 1, 1] to broadcast over an image batch like `like`."""
    return values.to(like.device)[t].to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def q_sample(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """The forward process in one jump: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, eps ~ N(0, I).

    x0, noise: [B, C, H, W]; t: [B] integer steps in [0, T). Equals DDPMScheduler.add_noise.
    """
    a = _per_sample(alpha_bar, t, x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def training_target(
    x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """What the network learns to output at (x_t, t): the noise eps, or the velocity
    v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0 (Salimans & Ho 2022; DDPMScheduler.get_velocity)."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        a = _per_sample(alpha_bar, t, x0)
        return a.sqrt() * noise - (1 - a).sqrt() * x0
    raise ValueError(f"unknown prediction type {prediction_type!r}")


def diffusion_loss(model_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The simplified objective of Ho et al. (2020): plain MSE between prediction and target, all t weighted alike."""
    return F.mse_loss(model_output.float(), target.float())


# --- sampling: from x_T ~ N(0, I) back to an image, a few steps at a time ---------------------------------------


def sampling_timesteps(num_train_timesteps: int, steps: int) -> list[int]:
    """The `steps` timesteps a sampler visits, from noisiest to cleanest, evenly spaced and "trailing": the first
    is always T-1, pure noise, whatever the step count (Lin et al. 2024; short schedules need it). [steps]"""
    stride = num_train_timesteps / steps
    # T, T - stride, ... rounded, then - 1. np.arange as diffusers uses it: where a value falls on x.5, its float
    # rounding decides, and the same rounding keeps both samplers on the same steps
    return (np.round(np.arange(num_train_timesteps, 0, -stride)) - 1).astype(np.int64).tolist()


def predict_x0_and_eps(
    model_output: torch.Tensor, x_t: torch.Tensor, a_t: torch.Tensor, prediction_type: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Invert x_t = sqrt(a) x_0 + sqrt(1 - a) eps with the network's prediction: (x_0 estimate, eps estimate)."""
    if prediction_type == "epsilon":
        eps = model_output
        x0 = (x_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        return x0, eps
    if prediction_type == "v_prediction":
        # (x_t, v) is (x_0, eps) turned by the angle whose cosine is sqrt(a): turning back gives both at once
        v = model_output
        x0 = a_t.sqrt() * x_t - (1 - a_t).sqrt() * v
        eps = a_t.sqrt() * v + (1 - a_t).sqrt() * x_t
        return x0, eps
    raise ValueError(f"unknown prediction type {prediction_type!r}")


def ddim_step(
    model_output: torch.Tensor,
    x_t: torch.Tensor,
    t: int,
    t_prev: int,
    alpha_bar: torch.Tensor,
    prediction_type: str = "epsilon",
    clip: float | None = 1.0,
    consistent_eps: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One deterministic DDIM step (Song et al. 2021, eta = 0) from step t to t_prev (< 0 = the clean image).
    Returns (x_{t_prev}, x0_hat).

    Estimate x_0, then re-noise it to the level of t_prev along the same predicted noise direction:
    x_{t_prev} = sqrt(alpha_bar_prev) x0_hat + sqrt(1 - alpha_bar_prev) eps_hat.
    With `clip`, x0_hat is clamped to the data range; `consistent_eps` then recomputes eps_hat from the clamped
    x0_hat (diffusers' `use_clipped_model_output`), so that the step still lands on x_t's own line.
    """
    a_t = alpha_bar[t]
    a_prev = alpha_bar[t_prev] if t_prev >= 0 else torch.tensor(1.0)
    x0, eps = predict_x0_and_eps(model_output, x_t, a_t, prediction_type)
    if clip is not None:
        x0 = x0.clamp(-clip, clip)
        if consistent_eps:
            eps = (x_t - a_t.sqrt() * x0) / (1 - a_t).sqrt()
    return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps, x0


def ddpm_step(
    model_output: torch.Tensor,
    x_t: torch.Tensor,
    t: int,
    t_prev: int,
    alpha_bar: torch.Tensor,
    noise: torch.Tensor | None,
    prediction_type: str = "epsilon",
    clip: float | None = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ancestral DDPM step: sample x_{t_prev} ~ q(x_{t_prev} | x_t, x0_hat), the Gaussian posterior of the
    forward process given the estimated clean image (Ho et al. 2020, eq. 6-7), with its "fixed small" variance.
    `noise` ~ N(0, I) like x_t (unused, may be None, at t = 0: the last step adds none). Returns (x_{t_prev}, x0_hat).
    """
    a_t = alpha_bar[t]
    a_prev = alpha_bar[t_prev] if t_prev >= 0 else torch.tensor(1.0)
    alpha_step = a_t / a_prev  # alpha over the whole jump t_prev -> t (one step when sampling all T steps)
    beta_step = 1 - alpha_step
    x0, _ = predict_x0_and_eps(model_output, x_t, a_t, prediction_type)
    if clip is not None:
        x0 = x0.clamp(-clip, clip)
    # the posterior mean: a weighted sum of the x_0 estimate and the current sample
    x0_weight = a_prev.sqrt() * beta_step / (1 - a_t)
    x_t_weight = alpha_step.sqrt() * (1 - a_prev) / (1 - a_t)
    mean = x0_weight * x0 + x_t_weight * x_t
    if t == 0:
        return mean, x0
    variance = ((1 - a_prev) / (1 - a_t) * beta_step).clamp(min=1e-20)
    return mean + variance.sqrt() * noise, x0


def guided(uncond: torch.Tensor, cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022): move from the unconditional prediction towards the
    conditional one and past it; scale 1 = purely conditional, > 1 = sharper, more typical samples."""
    return uncond + scale * (cond - uncond)
