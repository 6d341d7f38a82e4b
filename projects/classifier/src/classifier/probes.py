"""Activation and gradient statistics from forward hooks and the tensor hooks they register for backward
(day 9: looking inside a training network).

Exploding or vanishing signals show as an activation std or a gradient norm far from the other layers', and a
layer whose weight gradients stay near zero is not learning.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class LayerProbe:
    """Every `every`-th optimizer step, each conv/linear layer's activation mean/std, output-gradient norm and
    weight-gradient norm, to TensorBoard (`layers/...`), with activation histograms (`activations/...`).

    In a training loop the hooks stay attached but record only on the steps being inspected, so other steps pay
    one Python call per layer: `probe.log_step(step)` after backward and before `optimizer.zero_grad()`.
    For one look: `with LayerProbe(model) as probe: <forward + backward>`, then read `probe.stats`.
    """

    def __init__(self, model: nn.Module, log=None, every: int = 0, first_step: int = 0, kinds=(nn.Conv2d, nn.Linear)):
        self.layers = {name: m for name, m in model.named_modules() if isinstance(m, kinds)}
        self.log, self.every = log, every
        self.stats: dict[str, float] = {}
        self.activations: dict[str, torch.Tensor] = {}
        self._handles: list = []
        self.recording = self._inspects(first_step)
        if every > 0:
            self._attach()

    def __enter__(self) -> LayerProbe:
        if not self._handles:  # a probe made for a loop (every > 0) is attached already
            self._attach()
        self.recording = True
        return self

    def __exit__(self, *exc) -> None:
        self._read_weight_grads()
        self.recording = False
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _attach(self) -> None:
        for name, module in self.layers.items():
            self._handles.append(module.register_forward_hook(self._on_forward(name)))

    def _inspects(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def _read_weight_grads(self) -> None:
        for name, module in self.layers.items():
            if module.weight.grad is not None:
                self.stats[f"{name}/weight_grad_norm"] = module.weight.grad.norm().item()

    def log_step(self, step: int) -> None:
        """Write what this step recorded (if it was inspected), then arm the hooks for the next step."""
        if self.recording:
            self._read_weight_grads()
            self.log.scalars({f"layers/{key}": value for key, value in self.stats.items()}, step)
            for name, values in self.activations.items():
                self.log.histogram(f"activations/{name}", values, step)
            self.stats, self.activations = {}, {}
        self.recording = self._inspects(step + 1)

    def _on_forward(self, name: str):
        def hook(module, inputs, output):
            if not self.recording or not module.training:  # evaluation passes between two steps are not steps
                return
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
