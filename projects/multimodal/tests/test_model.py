"""The contrastive loss against open_clip's ClipLoss, and the towers built from this project's configs."""

from __future__ import annotations

import math

import open_clip
import pytest
import torch
import torch.nn.functional as F

from multimodal.model import build_clip, contrastive_loss, image_size


def test_contrastive_loss_and_its_gradients_equal_open_clips_clip_loss():
    g = torch.Generator().manual_seed(0)
    images = F.normalize(torch.randn(16, 32, generator=g), dim=-1).requires_grad_()
    texts = F.normalize(torch.randn(16, 32, generator=g), dim=-1).requires_grad_()
    scale = torch.tensor(14.3, requires_grad=True)
    ours = contrastive_loss(images, texts, scale)
    grads = torch.autograd.grad(ours, (images, texts, scale))
    reference = open_clip.ClipLoss()(images, texts, scale)
    expected = torch.autograd.grad(reference, (images, texts, scale))
    torch.testing.assert_close(ours, reference, atol=1e-6, rtol=0)
    for a, b in zip(grads, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_contrastive_loss_on_a_hand_example():
    # two orthogonal pairs, scale 1: each row's softmax puts e / (e + 1) on its own pair
    features = torch.eye(2)
    expected = -math.log(math.e / (math.e + 1))
    assert contrastive_loss(features, features, torch.tensor(1.0)).item() == pytest.approx(expected, rel=1e-6)
    # a perfect match at a large scale costs nearly nothing; swapped captions cost a lot
    assert contrastive_loss(features, features, torch.tensor(100.0)).item() < 1e-6
    assert contrastive_loss(features, features.flip(0), torch.tensor(100.0)).item() > 50


@pytest.mark.parametrize("name", ["clip-tiny", "clip-small"])
def test_the_projects_configs_build_open_clip_models(name):
    model, preprocess, tokenizer = build_clip(name)
    assert isinstance(model, open_clip.CLIP)
    size = image_size(model)
    assert size == {"clip-tiny": 32, "clip-small": 64}[name]  # what the JSON config says
    tokens = tokenizer(["two small red circles left of a blue triangle", "one large green square"])
    assert tokens.shape == (2, 16)  # the configs' context length: the longest caption is 12 tokens
    image_features, text_features, scale = model(torch.randn(2, 3, size, size), tokens)
    assert image_features.shape == text_features.shape == (2, model.text_projection.shape[1])
    torch.testing.assert_close(image_features.norm(dim=-1), torch.ones(2))  # normalised by open_clip
    assert scale.item() == pytest.approx(1 / 0.07, rel=1e-5)  # CLIP's initial temperature


def test_pretrained_loads_weights_through_open_clip_as_a_downloaded_checkpoint_would(tmp_path):
    # offline stand-in for --pretrained laion2b_s34b_b79k: open_clip also takes a checkpoint file for `pretrained`
    trained, _, _ = build_clip("clip-tiny")
    with torch.no_grad():
        trained.logit_scale.fill_(3.0)  # something the fresh initialisation does not have
    torch.save(trained.state_dict(), tmp_path / "clip-tiny.pt")
    loaded, _, _ = build_clip("clip-tiny", str(tmp_path / "clip-tiny.pt"))
    for name, tensor in trained.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_unknown_models_and_unreachable_weights_are_one_line_errors():
    from dlshared.cli import UserError

    with pytest.raises(UserError, match="not an open_clip model"):
        build_clip("clip-nonexistent")
    with pytest.raises(UserError, match="--pretrained no-such-tag"):
        build_clip("clip-tiny", "no-such-tag")
