"""The conditional DCGAN (course day 17): shapes, the losses, training, resume. Tiny preset, seconds."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from diffusion.baselines_config import GAN_PRESETS
from diffusion.gan import (
    DISCRIMINATOR_WEIGHTS,
    GENERATOR_WEIGHTS,
    Discriminator,
    Generator,
    discriminator_loss,
    generator_loss,
    load_generator,
    sample_gan,
    train_gan,
)
from dlshared.checkpoint import load_json
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
    return train_gan(dataclasses.replace(GAN_PRESETS["tiny"], out=runs_root, name="uninterrupted"))


def test_shapes():
    gen, disc = Generator(1, 16, 10, noise_dim=16, embed_dim=8, width=8), Discriminator(1, 16, 10, width=8)
    images = gen(torch.randn(6, 16), torch.arange(6))
    assert images.shape == (6, 1, 16, 16) and images.abs().max() <= 1
    assert disc(images, torch.arange(6)).shape == (6,)
    samples = sample_gan(gen, torch.arange(10), torch.Generator().manual_seed(0))
    assert samples.shape == (10, 1, 16, 16)
    assert torch.equal(samples, sample_gan(gen, torch.arange(10), torch.Generator().manual_seed(0)))


def test_discriminator_uses_the_label():
    disc = Discriminator(1, 16, 10, width=8)
    images = torch.rand(4, 1, 16, 16) * 2 - 1
    disc.eval()  # batch statistics aside, the same images under other labels must score differently
    assert not torch.allclose(
        disc(images, torch.zeros(4, dtype=torch.long)), disc(images, torch.ones(4, dtype=torch.long))
    )


def test_losses_are_the_non_saturating_gan_losses():
    real, fake = torch.randn(8), torch.randn(8)
    ones, zeros = torch.ones(8), torch.zeros(8)
    expected_d = F.binary_cross_entropy_with_logits(real, ones) + F.binary_cross_entropy_with_logits(fake, zeros)
    torch.testing.assert_close(discriminator_loss(real, fake), expected_d)
    torch.testing.assert_close(generator_loss(fake), F.binary_cross_entropy_with_logits(fake, ones))
    # where D confidently rejects a fake, -log D(G(z)) still pushes hard; log(1 - D(G(z))) would not
    logit = torch.tensor([-8.0], requires_grad=True)
    generator_loss(logit).backward()
    assert logit.grad.abs().item() > 0.99


def test_train_tiny_writes_loadable_files_and_the_discriminator_learns(tiny_run):
    run_dir, history = tiny_run["run_dir"], tiny_run["history"]
    assert history[-1]["d_loss"] < history[0]["d_loss"]  # starts near log 4 = 1.386, the loss of a coin flip
    assert history[-1]["step"] == GAN_PRESETS["tiny"].steps
    assert_png(f"{run_dir}/curves.png", 700, 300)  # the history, and the judged accuracy at the end
    assert "curves" in tensorboard_images(run_dir)
    saved = load_json(f"{run_dir}/metrics.json")
    assert {"accuracy", "fid", "kid", "train_seconds", "train_samples_per_s", "run_dir"} <= saved.keys()
    assert load_json(f"{run_dir}/card.json")["model"] == "gan"  # what eval and the demo read
    gen = load_generator(run_dir)
    for key, value in load_file(f"{run_dir}/{GENERATOR_WEIGHTS}").items():
        torch.testing.assert_close(gen.state_dict()[key], value)
    assert load_file(f"{run_dir}/{DISCRIMINATOR_WEIGHTS}")
    samples = sample_gan(gen, torch.arange(10))
    assert samples.shape == (10, 1, 16, 16) and samples.abs().max() <= 1


def test_default_run_name_says_gan(runs_root):
    cfg = dataclasses.replace(GAN_PRESETS["tiny"], out=runs_root, steps=2, eval_samples=0)
    assert train_gan(cfg)["run_dir"].split("/")[-1].startswith("gan-")


def test_resume_continues_from_the_saved_step(runs_root, tiny_run, monkeypatch, capsys):
    class Killed(Exception):
        pass

    real_checkpoint, saves = Run.checkpoint, []

    def checkpoint_then_die(run, *args, **counters):  # the process dies right after the checkpoint of step 20
        real_checkpoint(run, *args, **counters)
        saves.append(counters["step"])
        if counters["step"] == 20:
            raise Killed

    cfg = dataclasses.replace(GAN_PRESETS["tiny"], out=runs_root, name="interrupted")
    monkeypatch.setattr(Run, "checkpoint", checkpoint_then_die)
    with pytest.raises(Killed):
        train_gan(cfg)
    resumed = train_gan(dataclasses.replace(cfg, resume=True))
    assert saves == [10, 20, 30]
    assert "resumed" in capsys.readouterr().out
    assert resumed["history"] == tiny_run["history"]
    for name in (GENERATOR_WEIGHTS, DISCRIMINATOR_WEIGHTS):  # both networks, BatchNorm statistics included
        ours, theirs = (load_file(f"{m['run_dir']}/{name}") for m in (resumed, tiny_run))
        for key in theirs:
            assert torch.equal(ours[key], theirs[key]), f"{name}: {key}"
    assert resumed["accuracy"] == tiny_run["accuracy"] and resumed["fid"] == tiny_run["fid"]


def test_bad_inputs_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not a baseline run"):
        load_generator(tmp_path)
    with pytest.raises(UserError, match="steps"):
        train_gan(dataclasses.replace(GAN_PRESETS["tiny"], out=tmp_path, steps=0))
