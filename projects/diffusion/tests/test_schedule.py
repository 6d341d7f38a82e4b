"""The hand-written lesson (schedule.py) against diffusers' schedulers, seeded: each function to 1e-5, and the
pipeline's samplers built on them (the default of `sample`, `eval`, the demo) to the same images as diffusers'."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from diffusion.model import build_unet
from diffusion.pipeline import ClassConditionalPipeline, training_scheduler
from diffusion.schedule import (
    alphas_cumprod,
    ddim_step,
    ddpm_step,
    diffusion_loss,
    guided,
    make_betas,
    q_sample,
    sampling_timesteps,
    training_target,
)

SCHEDULES = ["linear", "scaled_linear", "squaredcos_cap_v2"]
PREDICTIONS = ["epsilon", "v_prediction"]


def reference(schedule: str, prediction: str = "epsilon", cls=DDPMScheduler, **kw):
    return cls(
        num_train_timesteps=1000,
        beta_schedule=schedule,
        prediction_type=prediction,
        timestep_spacing="trailing",
        clip_sample=True,
        **kw,
    )


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_betas_and_alpha_bar_equal_diffusers(schedule):
    ref = reference(schedule)
    betas = make_betas(schedule, 1000)
    torch.testing.assert_close(betas, ref.betas, atol=1e-7, rtol=0)
    torch.testing.assert_close(alphas_cumprod(betas), ref.alphas_cumprod, atol=1e-6, rtol=0)
    assert alphas_cumprod(betas)[0] > 0.99 and alphas_cumprod(betas)[-1] < 0.01  # from data to (almost) pure noise


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_forward_process_equals_add_noise(schedule):
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(8, 1, 16, 16, generator=g) * 2 - 1, torch.randn(8, 1, 16, 16, generator=g)
    t = torch.tensor([0, 1, 10, 100, 500, 900, 998, 999])
    ref = reference(schedule)
    mine = q_sample(x0, noise, t, alphas_cumprod(make_betas(schedule, 1000)))
    torch.testing.assert_close(mine, ref.add_noise(x0, noise, t), atol=1e-5, rtol=0)


def test_forward_process_keeps_unit_variance():
    """x_t stays at variance 1 for unit-variance data: the "variance preserving" in VP-SDE."""
    alpha_bar = alphas_cumprod(make_betas("squaredcos_cap_v2", 1000))
    x0, noise = torch.randn(20000, 1, 1, 1), torch.randn(20000, 1, 1, 1)
    for step in (0, 300, 999):
        x_t = q_sample(x0, noise, torch.full((20000,), step), alpha_bar)
        assert abs(x_t.var().item() - 1) < 0.05


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_training_target_equals_diffusers(prediction):
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1, torch.randn(4, 1, 8, 8, generator=g)
    t = torch.tensor([3, 250, 600, 999])
    ref = reference("squaredcos_cap_v2", prediction)
    expected = noise if prediction == "epsilon" else ref.get_velocity(x0, noise, t)
    target = training_target(x0, noise, t, ref.alphas_cumprod, prediction)
    torch.testing.assert_close(target, expected, atol=1e-5, rtol=0)
    assert diffusion_loss(target, expected).item() < 1e-10


def _fake_model_output(step: int, shape, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed + step))


@pytest.mark.parametrize("consistent_eps", [True, False])
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("steps", [1000, 50, 7])
def test_ddim_step_equals_diffusers_over_a_whole_trajectory(prediction, steps, consistent_eps):
    ref = reference("squaredcos_cap_v2", prediction, DDIMScheduler)
    ref.set_timesteps(steps)
    x_ref = x_mine = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    timesteps = ref.timesteps.tolist()
    for i, t in enumerate(timesteps):
        output = _fake_model_output(i, x_ref.shape, 100) * 0.5
        x_ref = ref.step(output, t, x_ref, use_clipped_model_output=consistent_eps).prev_sample
        t_prev = t - 1000 // steps  # DDIM's previous timestep, as diffusers computes it
        x_mine, _ = ddim_step(output, x_mine, t, t_prev, ref.alphas_cumprod, prediction, consistent_eps=consistent_eps)
        torch.testing.assert_close(x_mine, x_ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("steps", [1000, 20])
def test_ddpm_step_equals_diffusers_with_the_same_noise(prediction, steps):
    ref = reference("squaredcos_cap_v2", prediction)
    ref.set_timesteps(steps)
    timesteps = ref.timesteps.tolist()
    x_ref = x_mine = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for i, t in enumerate(timesteps):
        output = _fake_model_output(i, x_ref.shape, 200) * 0.5
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        # diffusers draws the step's noise from the generator it is given; draw the same noise for the hand step
        noise = torch.randn(x_ref.shape, generator=torch.Generator().manual_seed(i))
        step = ref.step(output, t, x_ref, generator=torch.Generator().manual_seed(i))
        x_mine, x0_mine = ddpm_step(output, x_mine, t, t_prev, ref.alphas_cumprod, noise, prediction)
        x_ref = step.prev_sample
        torch.testing.assert_close(x_mine, x_ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(x0_mine, step.pred_original_sample, atol=1e-5, rtol=1e-5)


def test_sampling_timesteps_equal_diffusers_trailing_spacing():
    ref = reference("squaredcos_cap_v2", cls=DDIMScheduler)
    for steps in range(1, 1001):
        ref.set_timesteps(steps)
        assert sampling_timesteps(1000, steps) == ref.timesteps.tolist(), steps


@pytest.fixture(scope="module")
def random_pipeline():
    """A small untrained U-Net (random weights: its outputs are as wild as any) for both prediction types."""

    def make(prediction: str) -> ClassConditionalPipeline:
        torch.manual_seed(0)
        unet = build_unet(8, 1, 3, (8, 16), (False, True))
        pipe = ClassConditionalPipeline(unet, training_scheduler(1000, "squaredcos_cap_v2", prediction))
        pipe.set_progress_bar_config(disable=True)
        return pipe

    return {prediction: make(prediction) for prediction in PREDICTIONS}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("guidance", [2.0, 1.0])
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("sampler, steps", [("ddim", 50), ("ddim", 7), ("ddpm", 20), ("ddpm", 7)])
def test_hand_written_samplers_give_the_images_of_diffusers(random_pipeline, sampler, steps, prediction, guidance):
    """The pipeline's default samplers step with ddim_step / ddpm_step; diffusers-ddim / diffusers-ddpm step with
    DDIMScheduler / DDPMScheduler. The same seed (the same x_T and, for DDPM, the same noise at every step) must
    give the same images and the same denoising trajectory."""
    pipe = random_pipeline[prediction]

    def draw(name: str):
        generator = torch.Generator().manual_seed(5)
        return pipe([0, 1, 2, 1], steps, guidance, generator, name, trajectory_points=3)

    mine, theirs = draw(sampler), draw(f"diffusers-{sampler}")
    torch.testing.assert_close(mine.images, theirs.images, atol=1e-4, rtol=0)
    for a, b in zip(mine.trajectory, theirs.trajectory, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    assert mine.images.std() > 0.05  # real images, not a constant the two could agree on by accident
    other = pipe([0, 1, 2, 1], steps, guidance, torch.Generator().manual_seed(6), sampler).images
    assert (other - mine.images).abs().max() > 0.05  # and the seed matters


def test_guidance_interpolates_and_extrapolates():
    uncond, cond = torch.zeros(3), torch.ones(3)
    assert torch.equal(guided(uncond, cond, 0.0), uncond)
    assert torch.equal(guided(uncond, cond, 1.0), cond)
    assert torch.equal(guided(uncond, cond, 3.0), torch.full((3,), 3.0))
