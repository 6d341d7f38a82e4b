"""Pick the device to compute on: CUDA if present, then Apple's MPS, then the CPU, unless the user names one."""

from __future__ import annotations

import torch


def pick_device(name: str = "auto") -> torch.device:
    """Return the device for `name` ("auto", "cpu", "cuda", "cuda:1", "mps").

    "auto" prefers cuda > mps > cpu. Asking for a device this machine does not have is a user error, reported
    as a ValueError with the devices that do exist, instead of a CUDA stack trace three calls later.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:  # torch's message for a typo is a long list of backends
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available here (try --device cpu)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} GPU(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} requested but MPS is not available here (try --device cpu)")
    return device
