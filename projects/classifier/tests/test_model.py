"""The ResNet written in model.py, checked against torchvision's reference block and by its receptive field."""

from __future__ import annotations

import torch
from torchvision.models.resnet import BasicBlock

from classifier.model import ImageClassifier, ResidualBlock, SmallResNet


def test_shapes_and_parameter_count():
    model = SmallResNet(in_channels=1, num_classes=10)
    assert model(torch.rand(4, 1, 32, 32)).shape == (4, 10)
    assert sum(p.numel() for p in model.parameters()) == 308_074  # the quick preset's model, as the README says
    rgb = SmallResNet(in_channels=3, num_classes=7, widths=(8, 16, 32, 64), blocks=(2, 1, 1, 1))
    assert rgb(torch.rand(2, 3, 48, 40)).shape == (2, 7)  # any input size: global pooling


def test_residual_block_matches_torchvision_basic_block():
    """Same weights -> same output as torchvision's BasicBlock (with its usual 1x1-conv + BN downsample)."""
    torch.manual_seed(0)
    ours = ResidualBlock(16, 32, stride=2).eval()
    downsample = torch.nn.Sequential(torch.nn.Conv2d(16, 32, 1, stride=2, bias=False), torch.nn.BatchNorm2d(32))
    reference = BasicBlock(16, 32, stride=2, downsample=downsample).eval()
    for module in ours.modules():  # non-trivial BN statistics so the check covers them
        if isinstance(module, torch.nn.BatchNorm2d):
            (
                module.running_mean.uniform_(-1, 1),
                module.running_var.uniform_(0.5, 2),
                module.weight.data.uniform_(0.5, 2),
            )
    mapping = {"shortcut.0": "downsample.0", "shortcut.1": "downsample.1"}
    state = {}
    for key, value in ours.state_dict().items():
        prefix = ".".join(key.split(".")[:2])
        state[key.replace(prefix, mapping[prefix]) if prefix in mapping else key] = value
    reference.load_state_dict(state)
    x = torch.randn(2, 16, 12, 12)
    torch.testing.assert_close(ours(x), reference(x), atol=1e-5, rtol=1e-5)


def test_receptive_field_matches_gradient_footprint():
    """The pixels that influence one output position span exactly `receptive_field()` pixels per axis."""
    torch.manual_seed(0)
    # eval mode: in train mode BatchNorm's batch statistics connect every output to every input pixel
    model = SmallResNet(1, 10, widths=(4, 8, 8), blocks=(1, 2, 1)).eval()
    x = torch.randn(1, 1, 96, 96, requires_grad=True)
    features = model.stages(model.stem(x))  # [1, 8, 24, 24]
    features[0, :, 12, 12].sum().backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
    assert rows.max() - rows.min() + 1 == model.receptive_field() == 33  # 3 + (2+2) + (2+4 + 4+4) + (4+8)


def test_classifier_normalises_inside_the_model():
    backbone = torch.nn.Flatten()
    model = ImageClassifier(backbone, mean=(0.5,), std=(0.25,))
    assert torch.allclose(model(torch.full((1, 1, 2, 2), 0.75)), torch.ones(1, 4))
    rgb = ImageClassifier(torch.nn.Identity(), mean=(0.0,), std=(1.0,), expand_to_rgb=True)
    assert rgb(torch.rand(2, 1, 4, 4)).shape == (2, 3, 4, 4)


def test_layer_probe_reports_activations_and_gradients_of_every_layer():
    from classifier.probes import LayerProbe

    torch.manual_seed(0)
    model = SmallResNet(1, 10, widths=(4, 8), blocks=(1, 1))
    with LayerProbe(model) as probe:
        model(torch.rand(4, 1, 16, 16)).logsumexp(1).sum().backward()
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    for name in [*convs, "fc"]:
        for stat in ("act_mean", "act_std", "output_grad_norm", "weight_grad_norm"):
            assert f"{name}/{stat}" in probe.stats, f"{name}/{stat}"
    assert probe.stats["fc/weight_grad_norm"] == model.fc.weight.grad.norm().item()


def test_layer_probe_in_a_loop_records_only_the_inspected_steps():
    from classifier.probes import LayerProbe

    class Recorder:
        def __init__(self):
            self.steps = []

        def scalars(self, values, step):
            self.steps.append(step)
            assert "fc/weight_grad_norm" in {k.removeprefix("layers/") for k in values}

        def histogram(self, tag, values, step):
            pass

    torch.manual_seed(0)
    model, log = SmallResNet(1, 10, widths=(4,), blocks=(1,)), Recorder()
    probe = LayerProbe(model, log, every=3, first_step=2)  # a resumed run: step 2 is the next one
    for step in range(2, 10):
        model(torch.rand(2, 1, 8, 8)).sum().backward()
        probe.log_step(step)
        model.zero_grad()
    assert log.steps == [3, 6, 9]
