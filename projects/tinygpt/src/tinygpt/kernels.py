"""A fused RMSNorm in Triton, forward and backward: the lesson of course day 34.

RMSNorm is y = x / sqrt(mean(x^2) + eps) * weight over the last dimension. PyTorch's eager op runs it as several
kernels (square, mean, rsqrt, two multiplies), each reading its input from GPU memory and writing its output back;
a norm does almost no arithmetic per byte, so those round trips are its whole cost. Here one program normalises a
whole row in registers: the forward reads x and the weight and writes y and one float per row (1/rms, kept for the
backward); the backward reads x, dy and 1/rms and writes dx, with the weight's gradient summed per program in
registers. Float32 inside whatever the tensors' dtype is.

Used by model.py's `RMSNorm` on CUDA tensors (`--triton-kernels`, the default); the CPU, `torch.compile` (Inductor
writes its own fused kernel) and a machine without Triton use PyTorch's op. This module imports Triton: import it
only where a kernel will run. Set TRITON_INTERPRET=1 before importing it and the kernels run on CPU tensors through
Triton's interpreter (Triton reads the variable when `@triton.jit` decorates a kernel): that is how the tests and
the lesson check them against PyTorch.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_FUSED_BYTES = 65536
"""Widest row one program holds in registers (Triton's layer-norm tutorial's limit); wider rows use PyTorch's op."""


@triton.jit
def _rms_norm_forward(X, W, Y, RSTD, x_row_stride, y_row_stride, N, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0)  # one program per row
    cols = tl.arange(0, BLOCK)  # BLOCK is N rounded up to a power of two ...
    mask = cols < N  # ... so the lanes past the end of the row are masked off
    x = tl.load(X + row * x_row_stride + cols, mask=mask, other=0.0).to(tl.float32)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)  # masked lanes hold 0: they add nothing to the sum
    tl.store(RSTD + row, rstd)
    tl.store(Y + row * y_row_stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _rms_norm_backward(
    DY, X, W, RSTD, DX, DW_PARTS, dy_row_stride, x_row_stride, dx_row_stride, M, N, BLOCK: tl.constexpr
):
    # with g = dy * w and x_hat = x * rstd:  dx = rstd * (g - x_hat * mean(g * x_hat)),  dw = sum over rows of dy * x_hat
    program = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < N
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    dw = tl.zeros([BLOCK], dtype=tl.float32)  # this program's share of the weight's gradient, in registers
    for row in range(program, M, tl.num_programs(0)):  # rows program, program + P, program + 2P, ...
        x = tl.load(X + row * x_row_stride + cols, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + row * dy_row_stride + cols, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(RSTD + row)
        x_hat = x * rstd
        g = dy * w
        dx = rstd * (g - x_hat * (tl.sum(g * x_hat, axis=0) / N))
        tl.store(DX + row * dx_row_stride + cols, dx.to(DX.dtype.element_ty), mask=mask)
        dw += dy * x_hat
    tl.store(DW_PARTS + program * N + cols, dw, mask=mask)  # one row of partial sums per program, summed after


def _rows(t: torch.Tensor) -> torch.Tensor:
    """(..., N) as (M, N) with unit stride along N (a copy only when the last dimension is strided)."""
    rows = t.reshape(-1, t.size(-1))
    return rows if rows.stride(-1) == 1 else rows.contiguous()


def _num_warps(block: int) -> int:
    return min(max(block // 256, 1), 8)  # more warps for wider rows (the tutorial's rule)


def _backward_programs(device: torch.device, rows: int) -> int:
    """Enough programs to fill the GPU a few times over; each writes one row of weight-gradient partials."""
    per_device = 4 * torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4
    return max(1, min(rows, per_device))


class FusedRMSNorm(torch.autograd.Function):
    """y = rms_norm(x, weight, eps) through the two kernels above, so training can backpropagate through it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        x_rows = _rows(x)  # (M, N)
        M, N = x_rows.shape
        y = torch.empty_like(x_rows)
        rstd = torch.empty(M, dtype=torch.float32, device=x.device)  # 4 bytes a row: the backward skips a reduction
        block = triton.next_power_of_2(N)
        _rms_norm_forward[(M,)](
            x_rows, weight, y, rstd, x_rows.stride(0), y.stride(0), N, eps, BLOCK=block, num_warps=_num_warps(block)
        )
        ctx.save_for_backward(x_rows, weight, rstd)
        return y.view(x.shape)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        x_rows, weight, rstd = ctx.saved_tensors
        M, N = x_rows.shape
        dy_rows = _rows(dy)
        dx = torch.empty_like(x_rows)
        programs = _backward_programs(x_rows.device, M)
        dw_parts = torch.empty(programs, N, dtype=torch.float32, device=x_rows.device)  # (P, N)
        block = triton.next_power_of_2(N)
        _rms_norm_backward[(programs,)](
            dy_rows,
            x_rows,
            weight,
            rstd,
            dx,
            dw_parts,
            dy_rows.stride(0),
            x_rows.stride(0),
            dx.stride(0),
            M,
            N,
            BLOCK=block,
            num_warps=_num_warps(block),
        )
        return dx.view(dy.shape), dw_parts.sum(0).to(weight.dtype), None  # no gradient for eps


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """F.rms_norm(x, (N,), weight, eps) over the last dimension N, as the fused kernels; the output has x's dtype.
    A row wider than one program holds goes to PyTorch's op."""
    if x.size(-1) * x.element_size() > MAX_FUSED_BYTES or x.numel() == 0:
        return torch.nn.functional.rms_norm(x, (x.size(-1),), weight, eps)
    return FusedRMSNorm.apply(x, weight, eps)
