"""Peak FLOP/s for MFU: a table of dense bf16/fp16 tensor-core peaks for GPUs, a measured matmul on CPUs.

MFU (model FLOPs utilisation, PaLM appendix B) = model FLOPs per token x tokens/s / peak FLOP/s. A CPU has no
datasheet figure that torch can reach, so its "peak" is what a large matmul achieves here at the run's dtype and
thread count: MFU on a CPU then reads "share of the best matmul speed this machine shows".
"""

from __future__ import annotations

import time

import torch

# dense (no sparsity) bf16 tensor-core FLOP/s from the vendors' datasheets
GPU_PEAK_BF16 = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "A10G": 125e12,
    "A10": 125e12,
    "L40S": 362e12,
    "L4": 121e12,
    "RTX 4090": 165e12,
    "RTX 3090": 71e12,
    "V100": 125e12,
    "T4": 65e12,
}


def measured_matmul_flops(dtype: torch.dtype = torch.float32, n: int = 1024, seconds: float = 0.3) -> float:
    """FLOP/s of an n x n matmul on the CPU, best of the repeats that fit in `seconds`."""
    # a generator of its own: measuring must not move the global RNG that dropout draws from (resume exactness)
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, dtype=dtype, generator=generator) for _ in range(2))
    a @ b  # warm-up: thread pool start, kernel choice
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best


def peak_flops(device: torch.device, dtype: torch.dtype = torch.float32) -> float | None:
    """Peak FLOP/s of one `device` at `dtype`, or None when unknown (MFU is then not reported)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, flops in GPU_PEAK_BF16.items():
            if key in name:
                return flops if dtype in (torch.bfloat16, torch.float16) else flops / 2  # tf32 is half of bf16
        return None
    if device.type == "cpu":
        return measured_matmul_flops(dtype)
    return None


def reuse_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of handing it back to the OS.

    By default glibc serves each allocation above 32 MB (attention scores, activations of a large batch) with a
    fresh mmap and unmaps it on free, so every training step pays page faults to zero the same memory again:
    on this 2-core CPU that was a third of a bf16 step of the shakespeare-char model. M_MMAP_MAX = 0 sends all
    allocations through the heap and a huge M_TRIM_THRESHOLD keeps the heap from shrinking. The cost: the
    process keeps its peak memory until it exits. Returns False where it does not apply (not glibc).
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # from glibc's malloc.h
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))
