"""Latent diffusion (the `latent` preset, latent.py): the autoencoder's encode/decode and scaling, a tiny latent run
that trains, saves, resumes, reuses an autoencoder and is scored by the verbs; samples decode to images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from diffusion.artifacts import load_pipeline
from diffusion.cli import COMMANDS, main
from diffusion.config import SAMPLERS
from diffusion.data import load_data
from diffusion.latent import (
    autoencoder_loss,
    build_autoencoder,
    decode_latents,
    encode_latents,
    latent_scaling_factor,
)
from diffusion.pipeline import ClassConditionalPipeline
from dlshared.checkpoint import load_resume_state
from dlshared.cli import UserError, run_cli
from dlshared.runs import RunLock

from .conftest import assert_png, tensorboard_images, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_AUTOENCODER = {"autoencoder_channels": (8, 16), "autoencoder_steps": 20}
"""16x16 digits -> 4x8x8 latents, 20 steps: seconds."""


def tiny_latent_config(out: Path, **overrides):
    return tiny_config(out, latent=True, **{**TINY_AUTOENCODER, **overrides})


@pytest.fixture(scope="module")
def latent_run(runs_root) -> dict:
    from diffusion.train import train

    return train(tiny_latent_config(runs_root, name="latent"))


def test_encode_decode_shapes_and_the_scaling_factor():
    torch.manual_seed(0)
    autoencoder = build_autoencoder(16, 1, (8, 16, 16), 4).eval()  # three levels: 16 px -> 4x4
    images = torch.rand(12, 1, 16, 16) * 2 - 1
    raw = autoencoder.encode(images).latent_dist.mean  # diffusers' own posterior mean
    assert raw.shape == (12, 4, 4, 4)
    scale = latent_scaling_factor(autoencoder, images)
    torch.testing.assert_close(scale, 1 / raw.std().item())
    autoencoder.register_to_config(scaling_factor=scale)
    latents = encode_latents(autoencoder, images)
    torch.testing.assert_close(latents, raw * scale)
    assert abs(latents.std().item() - 1) < 1e-5  # unit variance: what the noise schedule assumes
    decoded = decode_latents(autoencoder, latents)
    assert decoded.shape == (12, 1, 16, 16)
    torch.testing.assert_close(decoded, autoencoder.decode(raw).sample)  # the scaling undone before decoding


def test_autoencoder_loss_is_mse_plus_weighted_kl_of_diffusers_posterior():
    g = torch.Generator().manual_seed(0)
    moments = torch.randn(3, 8, 4, 4, generator=g)  # mean and logvar of a 4-channel latent map
    posterior = DiagonalGaussianDistribution(moments)
    images, reconstruction = torch.randn(2, 3, 1, 16, 16, generator=g)
    loss, mse, kl = autoencoder_loss(reconstruction, images, posterior.mean, posterior.logvar, kl_weight=0.01)
    torch.testing.assert_close(mse, F.mse_loss(reconstruction, images))
    torch.testing.assert_close(kl, posterior.kl().mean())  # diffusers' closed form, summed over [c, h, w]
    torch.testing.assert_close(loss, mse + 0.01 * kl)


def test_a_tiny_latent_run_trains_saves_and_evaluates(latent_run):
    run = Path(latent_run["run_dir"])
    for name in ("pipeline/vae/config.json", "pipeline/vae/diffusion_pytorch_model.safetensors", "resume.pt"):
        assert (run / name).is_file(), name
    card = json.loads((run / "card.json").read_text(encoding="utf-8"))
    assert card["latent_shape"] == [4, 8, 8] and card["image_size"] == 16
    losses = [h["loss"] for h in latent_run["history"]]
    assert losses[-1] < losses[0]
    for phase in ("autoencoder_curves", "curves"):  # the autoencoder first (20 steps: one record), then the U-Net
        assert_png(run / f"{phase}.png", 700, 300)
    assert {"autoencoder_curves", "curves"} <= tensorboard_images(run)
    assert latent_run["eval"]["samples"] == 20 and latent_run["autoencoder_seconds"] > 0
    pipe = load_pipeline(run)
    assert pipe.unet.config.sample_size == 8 and pipe.unet.config.in_channels == 4
    assert not pipe.scheduler.config.clip_sample  # latents have no [-1, 1] range to clip to
    train_images = load_data(tiny_config(Path("unused"))).train_images
    assert abs(encode_latents(pipe.vae, train_images).std().item() - 1) < 1e-4  # the saved scaling factor
    torch.manual_seed(0)
    untrained = build_autoencoder(16, 1, TINY_AUTOENCODER["autoencoder_channels"], 4).eval()
    with torch.no_grad():  # the autoencoder was trained first: it reconstructs far better than at initialisation
        errors = [F.mse_loss(ae(train_images[:200]).sample, train_images[:200]).item() for ae in (pipe.vae, untrained)]
    assert errors[0] < 0.5 * errors[1], errors


def test_a_latent_sample_is_the_decoded_u_net_output(latent_run):
    pipe = load_pipeline(Path(latent_run["run_dir"]))
    images = pipe([0, 9, 3], 3, 2.0, torch.Generator().manual_seed(0)).images
    assert images.shape == (3, 1, 16, 16) and images.min() >= 0 and images.max() <= 1
    undecoded = ClassConditionalPipeline(pipe.unet, pipe.scheduler)  # the same U-Net and loop, no decoder
    undecoded.set_progress_bar_config(disable=True)
    undecoded.to_images = lambda x: x  # keep what the loop ends with: latents
    latents = undecoded([0, 9, 3], 3, 2.0, torch.Generator().manual_seed(0)).images
    assert latents.shape == (3, 4, 8, 8)
    with torch.no_grad():
        expected = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample  # diffusers' decoder, by hand
    torch.testing.assert_close(images, ((expected + 1) / 2).clamp(0, 1))
    for sampler in SAMPLERS:
        out = pipe([1, 2], 2, 2.0, torch.Generator().manual_seed(1), sampler, trajectory_points=2)
        assert out.images.shape == (2, 1, 16, 16) and torch.isfinite(out.images).all(), sampler
        assert out.trajectory[0].shape == (2, 1, 16, 16)  # the demo's strip: decoded x_0 estimates


def test_eval_and_sample_verbs_take_a_latent_run(latent_run, runs_root, tmp_path, capsys):
    saved = latent_run["eval"]
    args = ["--n", str(saved["samples"]), "--steps", str(saved["steps"]), "--runs", str(runs_root)]
    main(["eval", "--ckpt", latent_run["run_dir"], *args])
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("accuracy", "confident", "fid", "kid"):  # the judge of the pixel model, on the decoded images
        assert metrics[key] == saved[key], key
    main(
        ["sample", "--ckpt", latent_run["run_dir"], "--n", "2", "--class", "4", "--steps", "2", "--out", str(tmp_path)]
    )
    from PIL import Image

    assert Image.open(tmp_path / "4_1.png").size == (16, 16)
    main(["bench", "--ckpt", latent_run["run_dir"], "--batch-size", "2", "--configs", "ddim:3", "--train-steps", "0"])
    cost = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["cost"]
    assert cost["autoencoder_parameters"] > 0 and cost["gflop_decode"] > 0  # a latent sample ends in a decoder call
    expected = 3 * 2 * cost["gflop_unet_call"] + cost["gflop_decode"]  # 3 steps, guided: 2 U-Net calls each
    assert cost["gflop_per_sample"]["ddim:3"] == pytest.approx(expected)


def test_a_latent_run_resumes_with_its_own_autoencoder(runs_root, monkeypatch):
    import diffusion.train as train_module

    short = {"steps": 20, "eval_samples": 0, "autoencoder_steps": 5}
    whole = train_module.train(tiny_latent_config(runs_root, name="latent-whole", **short))
    real_loss, calls = train_module.diffusion_loss, {"n": 0}

    def dies_at_step_14(prediction, target):
        calls["n"] += 1
        if calls["n"] == 14:
            raise KeyboardInterrupt  # a kill between the checkpoints of steps 10 and 20
        return real_loss(prediction, target)

    monkeypatch.setattr(train_module, "diffusion_loss", dies_at_step_14)
    with pytest.raises(KeyboardInterrupt):
        train_module.train(tiny_latent_config(runs_root, name="latent-split", **short))
    for lock in list(RunLock.held_here):  # a real kill ends the process, and the OS releases its run lock
        lock.release()
    monkeypatch.setattr(train_module, "diffusion_loss", real_loss)
    assert load_resume_state(runs_root / "diffusion/latent-split/resume.pt")["step"] == 10
    argv = ["train", "--preset", "tiny", "--out", str(runs_root), "--name", "latent-split", "--resume"]
    resumed = run_cli("diffusion", COMMANDS, argv)
    assert resumed["steps"] == 20 and resumed["autoencoder_seconds"] == 0  # loaded from its pipeline, not retrained
    a, b = load_pipeline(Path(whole["run_dir"])), load_pipeline(Path(resumed["run_dir"]))
    for network in ("unet", "vae"):
        theirs = getattr(b, network).state_dict()
        for key, value in getattr(a, network).state_dict().items():
            torch.testing.assert_close(value, theirs[key], atol=1e-6, rtol=1e-5, msg=f"{network} {key}")


def test_an_autoencoder_is_reused_from_another_run(latent_run, runs_root):
    from diffusion.train import train

    source = Path(latent_run["run_dir"])
    reused = train(tiny_latent_config(runs_root, name="latent-reuse", steps=2, eval_samples=0, autoencoder=source))
    assert reused["autoencoder_seconds"] == 0
    ours, theirs = load_pipeline(Path(reused["run_dir"])).vae, load_pipeline(source).vae
    assert ours.config.scaling_factor == theirs.config.scaling_factor
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key


def test_a_pixel_run_is_no_autoencoder(tiny_run, runs_root):
    from diffusion.train import train

    with pytest.raises(UserError, match="no autoencoder here"):
        train(tiny_latent_config(runs_root, name="latent-bad", autoencoder=Path(tiny_run["run_dir"])))
