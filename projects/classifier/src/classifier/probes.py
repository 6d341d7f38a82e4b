"""Activation and gradient statistics from forward hooks and the tensor hooks they register for backward (day 9: looking inside a training network).

Exploding or vanishing signals show as an activation std or a gradient norm far from the other layers', and a
layer whose weight gradients stay near zero is not learning. Hooks are attached only for the step being inspected, so they cost nothing otherwise.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class LayerProbe:
    """`with LayerProbe(model) as probe: <forward + backward>` then `probe.stats` maps "layer/stat" to floats."""

    def __init__(self, model: nn.Module, kinds=(nn.Conv2d, nn.Linear)):
        self.layers = {name: m for name, m in model.named_modules() if isinstance(m, kinds)}
        self.stats: dict[str, float] = {}
        self.activations: dict[str, torch.Tensor] = {}
        self._handles: list = []

    def __enter__(self) -> LayerProbe:
        for name, module in self.layers.items():
            self._handles.append(module.register_forward_hook(self._on_forward(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for name, module in self.layers.items():
            if module.weight.grad is not None:
                self.stats[f"{name}/weight_grad_norm"] = module.weight.grad.norm().item()

    def _on_forward(self, name: str):
        def hook(module, inputs, output):
            out = output.detach().float()
            self.activations[name] = out.flatten()[:4096].cpu()  # a sample for the histogram
            self.stats[f"{name}/act_mean"] = out.mean().item()
            self.stats[f"{name}/act_std"] = out.std().item()
            if output.requires_grad:  # a tensor hook sees d(loss)/d(output) during backward
                output.register_hook(self._on_backward(name))

        return hook

    def _on_backward(self, name: str):
        def hook(grad: torch.Tensor) -> None:
            self.stats[f"{name}/output_grad_norm"] = grad.detach().float().norm().item()

        return hook
