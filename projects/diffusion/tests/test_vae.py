"""The conditional VAE (course day 16): shapes, the KL term, the reparameterisation trick, training, resume,
interpolation. Tiny preset, seconds."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from diffusion.autoencoder import (
    CVAE,
    VAE_WEIGHTS,
    interpolate,
    kl_divergence,
    load_vae,
    reparameterise,
    sample_vae,
    to_images,
    train_vae,
    vae_loss,
)
from diffusion.baselines_config import VAE_PRESETS
from diffusion.data import load_data
from dlshared.checkpoint import RESUME_NAME, load_json
from dlshared.cli import UserError
from dlshared.training import Run

from .conftest import assert_png, tensorboard_images

pytestmark = [
    pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance`"),
    pytest.mark.usefixtures("one_thread"),
]


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """This module's own runs root (the VAE and GAN tests name their runs alike); the judge is conftest's short one."""
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def tiny_run(runs_root) -> dict:
    return train_vae(dataclasses.replace(VAE_PRESETS["tiny"], out=runs_root, name="uninterrupted"))


def test_shapes():
    vae = CVAE(channels=1, image_size=16, num_classes=10, latent_dim=16, width=8)
    images, labels = torch.rand(5, 1, 16, 16) * 2 - 1, torch.arange(5)
    mu, logvar = vae.encode(images, labels)
    assert mu.shape == logvar.shape == (5, 16)
    assert vae.decode(mu, labels).shape == (5, 1, 16, 16)
    logits, mu, logvar = vae(images, labels)
    assert logits.shape == (5, 1, 16, 16)
    samples = sample_vae(vae, torch.arange(10), torch.Generator().manual_seed(0))
    assert samples.shape == (10, 1, 16, 16) and samples.min() >= -1 and samples.max() <= 1
    again = sample_vae(vae, torch.arange(10), torch.Generator().manual_seed(0))
    assert torch.equal(samples, again)  # seeded sampling is reproducible


def test_kl_matches_closed_form_and_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    kl = kl_divergence(mu, logvar)  # [4]
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(kl, torch.distributions.kl_divergence(q, p).sum(1))
    # KL = E_q[log q(z) - log p(z)], estimated with 200k reparameterised draws per example
    z = reparameterise(mu.expand(200_000, 4, 6), logvar.expand(200_000, 4, 6), torch.Generator().manual_seed(1))
    monte_carlo = (q.log_prob(z) - p.log_prob(z)).sum(2).mean(0)
    torch.testing.assert_close(monte_carlo, kl, rtol=0.02, atol=0.02)


def test_reparameterisation_gradients_flow():
    mu = torch.tensor([[0.5, -1.0, 2.0]], requires_grad=True)
    logvar = torch.tensor([[0.0, 1.0, -2.0]], requires_grad=True)
    z = reparameterise(mu, logvar, torch.Generator().manual_seed(0))
    z.sum().backward()
    eps = torch.randn(1, 3, generator=torch.Generator().manual_seed(0))  # the same draw
    torch.testing.assert_close(mu.grad, torch.ones(1, 3))  # dz/dmu = 1
    torch.testing.assert_close(logvar.grad, 0.5 * torch.exp(0.5 * logvar.detach()) * eps)  # dz/dlogvar


def test_vae_loss_is_bce_plus_beta_kl():
    g = torch.Generator().manual_seed(0)
    logits, images = torch.randn(3, 1, 4, 4, generator=g), torch.rand(3, 1, 4, 4, generator=g) * 2 - 1
    mu, logvar = torch.randn(3, 2, generator=g), torch.randn(3, 2, generator=g)
    loss, recon, kl = vae_loss(logits, images, mu, logvar, beta=0.5)
    expected = torch.nn.BCEWithLogitsLoss(reduction="sum")(logits, (images + 1) / 2) / 3
    torch.testing.assert_close(recon, expected)
    torch.testing.assert_close(loss, recon + 0.5 * kl)


def test_train_tiny_writes_loadable_files_and_the_loss_falls(tiny_run):
    run_dir = tiny_run["run_dir"]
    history = tiny_run["history"]
    assert history[-1]["recon"] < history[0]["recon"]
    assert history[-1]["step"] == VAE_PRESETS["tiny"].steps
    assert_png(f"{run_dir}/curves.png", 700, 300)  # the history, and the judged accuracy at the end
    assert "curves" in tensorboard_images(run_dir)
    saved = load_json(f"{run_dir}/metrics.json")
    assert {"accuracy", "fid", "kid", "train_seconds", "train_samples_per_s", "run_dir"} <= saved.keys()
    assert saved["samples"] == VAE_PRESETS["tiny"].eval_samples
    assert load_json(f"{run_dir}/card.json")["model"] == "vae"  # what eval and the demo read
    vae = load_vae(run_dir)
    for key, value in load_file(f"{run_dir}/{VAE_WEIGHTS}").items():
        torch.testing.assert_close(vae.state_dict()[key], value)
    assert sample_vae(vae, torch.arange(3)).shape == (3, 1, 16, 16)


def test_default_run_name_says_vae(runs_root):
    cfg = dataclasses.replace(VAE_PRESETS["tiny"], out=runs_root, steps=2, eval_samples=0)
    assert (metrics := train_vae(cfg))["run_dir"].split("/")[-1].startswith("vae-")
    assert "accuracy" not in metrics  # eval_samples=0 skips the judge


def test_resume_continues_from_the_saved_step(runs_root, tiny_run, monkeypatch, capsys):
    class Killed(Exception):
        pass

    real_checkpoint, saves = Run.checkpoint, []

    def checkpoint_then_die(run, *args, **counters):  # the process dies right after the checkpoint of step 20
        real_checkpoint(run, *args, **counters)
        saves.append(counters["step"])
        if counters["step"] == 20:
            raise Killed

    cfg = dataclasses.replace(VAE_PRESETS["tiny"], out=runs_root, name="interrupted")
    monkeypatch.setattr(Run, "checkpoint", checkpoint_then_die)
    with pytest.raises(Killed):
        train_vae(cfg)
    resumed = train_vae(dataclasses.replace(cfg, resume=True))
    assert saves == [10, 20, 30]  # the resumed run went on from step 20, not from 0
    assert "resumed" in capsys.readouterr().out
    assert resumed["history"] == tiny_run["history"]
    ours, theirs = (load_file(f"{m['run_dir']}/{VAE_WEIGHTS}") for m in (resumed, tiny_run))
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key
    assert (runs_root / "diffusion" / "interrupted" / RESUME_NAME).is_file()


def test_interpolation_endpoints_decode_the_posterior_means(tiny_run):
    vae = load_vae(tiny_run["run_dir"])
    data = load_data(VAE_PRESETS["tiny"])
    a, b = data.test_images[0], data.test_images[1]
    la, lb = data.test_labels[0].item(), data.test_labels[1].item()
    path = interpolate(vae, a, b, la, lb, steps=5)
    assert path.shape == (5, 1, 16, 16)
    with torch.no_grad():
        mu, _ = vae.encode(torch.stack([a, b]), torch.tensor([la, lb]))
        ends = to_images(vae.decode(mu, torch.tensor([la, lb])))
    torch.testing.assert_close(path[0], ends[0])
    torch.testing.assert_close(path[-1], ends[1])
    assert interpolate(vae, a, b, steps=3).shape == (3, 1, 16, 16)  # labels guessed by the VAE itself


def test_bad_inputs_are_user_errors(runs_root, tmp_path):
    with pytest.raises(UserError, match="batch-size"):
        train_vae(dataclasses.replace(VAE_PRESETS["tiny"], out=runs_root, name="bad", batch_size=10**6))
    with pytest.raises(UserError, match="not a baseline run"):
        load_vae(tmp_path)
    with pytest.raises(UserError, match="resume"):
        train_vae(dataclasses.replace(VAE_PRESETS["tiny"], out=tmp_path, name="nothing", resume=True))
