"""The sampler as a diffusers pipeline: `ClassConditionalPipeline(unet, scheduler)` with classifier-free guidance.

The denoising loop is written out in `denoise`. By default it steps with schedule.py's hand-written DDIM step
(sampler "ddim"; "ddpm" for the ancestral step); diffusers' schedulers are on offer beside them: "diffusers-ddim"
and "diffusers-ddpm" (the same two samplers from the library, equal to ours to float precision) and "dpm"
(DPM-Solver++, diffusers' only). The registered scheduler, the DDPMScheduler the U-Net was trained with, holds the
noise schedule's config (betas, prediction type, clipping) that every sampler reads.

A latent pipeline (the `latent` preset, latent.py) also holds `vae`, the autoencoder whose latents the U-Net
generates: the loop runs on latents, and `to_images` decodes them (Stable Diffusion's design).

It saves and loads like any diffusers pipeline (model_index.json + unet/ + scheduler/ [+ vae/], safetensors):

    pipe = ClassConditionalPipeline.from_pretrained("runs/diffusion/NAME/pipeline")
    generator = torch.Generator().manual_seed(0)
    images = pipe([3, 3, 7], num_inference_steps=50, guidance_scale=2.0, generator=generator, sampler="ddim").images

The U-Net alone loads with `UNet2DModel.from_pretrained(path, subfolder="unet")`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    UNet2DModel,
)
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from .config import SAMPLERS
from .latent import decode_latents
from .schedule import alphas_cumprod, ddim_step, ddpm_step, guided, make_betas, sampling_timesteps

LIBRARY_SCHEDULERS = {
    "diffusers-ddpm": DDPMScheduler,
    "diffusers-ddim": DDIMScheduler,
    "dpm": DPMSolverMultistepScheduler,
}


def make_scheduler(sampler: str, config) -> DDPMScheduler | DDIMScheduler | DPMSolverMultistepScheduler:
    """One of diffusers' schedulers ("diffusers-ddpm", "diffusers-ddim", "dpm") on the noise schedule `config`."""
    if sampler not in LIBRARY_SCHEDULERS:
        raise ValueError(f"unknown diffusers scheduler {sampler!r}; choose from {', '.join(LIBRARY_SCHEDULERS)}")
    if sampler == "dpm":
        # DPM-Solver steps in log-SNR (lambda); the cosine schedule's last steps have alpha_bar ~ 0, lambda -> -inf,
        # and the solver blows up there. Starting below lambda = -5.1 is diffusers' documented fix.
        # Like DDIM's clip_sample, thresholding keeps its x_0 estimates in [-1, 1] (sample_max_value 1 = a clip);
        # latents have no such range, and a latent pipeline clips neither (clip_sample False).
        options = {"lambda_min_clipped": -5.1}
        if config.clip_sample:
            options |= {"thresholding": True, "sample_max_value": config.clip_sample_range}
        return DPMSolverMultistepScheduler.from_config(config, **options)
    return LIBRARY_SCHEDULERS[sampler].from_config(config)


def training_scheduler(
    num_train_timesteps: int, beta_schedule: str, prediction_type: str, clip_sample: bool = True
) -> DDPMScheduler:
    """The noise schedule as diffusers' config, saved in the pipeline: "trailing" timesteps start sampling at
    t = T-1 whatever the step count (Lin et al. 2024), and clip_sample keeps x_0 estimates in the data range
    [-1, 1] (pixels; not latents, whose range is not fixed: SD clips nothing either)."""
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule=beta_schedule,
        prediction_type=prediction_type,
        timestep_spacing="trailing",
        clip_sample=clip_sample,
    )


@dataclass
class ClassConditionalOutput(BaseOutput):
    images: torch.Tensor
    """[B, C, H, W] pixels in [0, 1]."""
    trajectory: list[torch.Tensor]
    """x_0 estimates along the way ([B, C, H, W] in [0, 1] each), when asked for; the denoising strip of the demo."""


class ClassConditionalPipeline(DiffusionPipeline):
    """Class-conditional sampling with classifier-free guidance for a UNet2DModel with a class embedding whose
    last label (num_class_embeds - 1) means "no class"; with `vae`, the U-Net's samples are latents to decode."""

    model_cpu_offload_seq = "unet->vae"
    _optional_components = ["vae"]

    def __init__(self, unet: UNet2DModel, scheduler: DDPMScheduler, vae: AutoencoderKL | None = None):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, vae=vae)

    @property
    def num_classes(self) -> int:
        return self.unet.config.num_class_embeds - 1

    @torch.no_grad()
    def __call__(
        self,
        class_labels: list[int] | torch.Tensor,
        num_inference_steps: int = 50,
        guidance_scale: float = 2.0,
        generator: torch.Generator | None = None,
        sampler: str = "ddim",
        trajectory_points: int = 0,
        batch_size: int = 500,
    ) -> ClassConditionalOutput:
        labels = torch.as_tensor(class_labels, dtype=torch.long).reshape(-1)
        if len(labels) == 0:
            raise ValueError("ask for at least one sample")
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(f"class labels must be in [0, {self.num_classes - 1}], got {labels.tolist()}")
        if not 1 <= num_inference_steps <= self.scheduler.config.num_train_timesteps:
            raise ValueError(f"num_inference_steps must be at least 1 and at most T, got {num_inference_steps}")
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
        images, trajectories = [], []
        for chunk in labels.split(batch_size):  # noise is drawn chunk by chunk from the one generator, in order
            out = self._sample(chunk, num_inference_steps, guidance_scale, generator, sampler, trajectory_points)
            images.append(out.images)
            trajectories.append(out.trajectory)
        trajectory = [torch.cat(points) for points in zip(*trajectories, strict=True)]
        return ClassConditionalOutput(images=torch.cat(images), trajectory=trajectory)

    def _sample(self, labels, steps, guidance_scale, generator, sampler, trajectory_points) -> ClassConditionalOutput:
        """One chunk of labels [B] denoised (`denoise`), with the x_0 estimates of `trajectory_points` steps."""
        keep = trajectory_steps(steps, trajectory_points)
        trajectory = []
        for i, (x, x0) in enumerate(self.denoise(labels, steps, guidance_scale, generator, sampler)):
            if i in keep:
                trajectory.append(self.to_images(x0 if x0 is not None else x))
        return ClassConditionalOutput(images=self.to_images(x), trajectory=trajectory)

    @torch.no_grad()
    def denoise(
        self, labels: torch.Tensor, steps: int, guidance_scale: float, generator: torch.Generator | None, sampler: str
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """The reverse process for labels [B] (checked by the caller), step by step: x_T ~ N(0, I), then after each
        of `steps` denoising steps yields (x_t, its x_0 estimate; None from DPM-Solver), in the U-Net's space
        (pixels, or latents that `to_images` decodes). The last x_t is the sample; the demo shows the others live."""
        config, unet = self.scheduler.config, self.unet
        T, prediction = config.num_train_timesteps, config.prediction_type
        clip = config.clip_sample_range if config.clip_sample else None
        size, channels = unet.config.sample_size, unet.config.in_channels
        # DDPM, DDIM and DPM-Solver++ all start from unit noise and feed x_t to the U-Net unscaled
        x = randn_tensor((len(labels), channels, size, size), generator=generator, device=self.device, dtype=unet.dtype)
        labels = labels.to(self.device)
        guide = guidance_scale != 1.0  # scale 1 is the conditional model alone: skip the unconditional half
        if guide:
            labels = torch.cat([labels, torch.full_like(labels, self.num_classes)])
        if sampler in LIBRARY_SCHEDULERS:
            scheduler = make_scheduler(sampler, config)
            scheduler.set_timesteps(steps, device=self.device)
            timesteps = scheduler.timesteps
        else:
            betas = make_betas(config.beta_schedule, T, config.beta_start, config.beta_end)
            alpha_bar = alphas_cumprod(betas).to(self.device)
            timesteps = sampling_timesteps(T, steps)
        for i, t in enumerate(self.progress_bar(timesteps)):
            output = unet(torch.cat([x, x]) if guide else x, t, class_labels=labels).sample  # eps or v [2B or B, ...]
            if guide:
                cond, uncond = output.chunk(2)
                output = guided(uncond, cond, guidance_scale)
            if sampler == "ddim":
                # DDIM steps back by T // steps, as diffusers does (the next visited step whenever steps divides T)
                x, x0 = ddim_step(output, x, t, t - T // steps, alpha_bar, prediction, clip)
            elif sampler == "ddpm":
                t_prev = timesteps[i + 1] if i + 1 < steps else -1
                noise = randn_tensor(x.shape, generator=generator, device=self.device, dtype=x.dtype) if t > 0 else None
                x, x0 = ddpm_step(output, x, t, t_prev, alpha_bar, noise, prediction, clip)
            else:
                step = scheduler.step(output, t, x, generator=generator, **self._step_options(scheduler))
                x, x0 = step.prev_sample, getattr(step, "pred_original_sample", None)  # DPM-Solver has no x0
            yield x, x0

    def to_images(self, x: torch.Tensor) -> torch.Tensor:
        """The U-Net's space -> [0, 1] pixels on the CPU: a latent pipeline decodes first, one call per sample."""
        return to_pixels(decode_latents(self.vae, x) if self.vae is not None else x)

    @staticmethod
    def _step_options(scheduler) -> dict:
        # DDIM clips its x_0 estimate to [-1, 1] but by default keeps the unclipped noise estimate for the step
        # direction. At the start of the cosine schedule (alpha_bar ~ 0) the two disagree wildly, and with guidance
        # the mismatch stayed in the samples as grain: measured on the quick model, DDIM-50 at guidance 2 judged
        # 88% correct, FID 6.1 without this, 98.5%, FID 0.43 with it (schedule.ddim_step's `consistent_eps`).
        # DDPM and DPM-Solver++ are consistent already.
        return {"use_clipped_model_output": True} if isinstance(scheduler, DDIMScheduler) else {}


def trajectory_steps(steps: int, points: int) -> set[int]:
    """Which of `steps` denoising steps (0-based) a trajectory of `points` x_0 estimates shows: evenly spread, the
    first and the last included."""
    return set(torch.linspace(0, steps - 1, points).round().long().tolist())


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] model space -> [0, 1] pixels, on the CPU."""
    return ((x.float().cpu() + 1) / 2).clamp(0, 1)
