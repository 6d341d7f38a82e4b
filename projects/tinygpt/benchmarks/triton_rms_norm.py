"""The fused Triton RMSNorm of tinygpt.kernels against PyTorch, forward and forward + backward, on a GPU.

    uv run python projects/tinygpt/benchmarks/triton_rms_norm.py              # on a machine with a CUDA GPU

Four implementations of y = x / sqrt(mean(x^2) + eps) * weight over rows of --widths columns:
  unfused   the formula in PyTorch ops, as transformers' LlamaRMSNorm writes it (one kernel per op)
  F.rms_norm  PyTorch's own op (nn.RMSNorm; a fused CUDA kernel in recent PyTorch)
  compiled  `unfused` through torch.compile: Inductor generates a fused Triton kernel of its own
  triton    tinygpt.kernels.rms_norm, the kernel tinygpt's llama model runs on CUDA
Prints the card's name, then per dtype and width the median time of each (torch.utils.benchmark, which
synchronises the GPU), the bandwidth that time implies for the bytes a fused kernel must move (forward: read x,
write y; backward: read x and dy, write dx), and the speed-up of `triton` over each. Rows x width x 2 bytes is
far beyond the L2 cache at the default sizes, so the figures are memory bandwidth, not cache.

`--traffic` counts instead (any machine, no GPU): the bytes each PyTorch op of `unfused` reads and writes, forward
and backward, per element of x, against the fused kernels' (2 tensor passes forward, 3 backward).

    uv run python projects/tinygpt/benchmarks/triton_rms_norm.py --traffic

Without a GPU, `TRITON_INTERPRET=1 ... --device cpu --rows 8 --widths 96 --no-compile --min-seconds 0.01` runs
the script through Triton's interpreter: a check that it works, not a measurement.
"""

from __future__ import annotations

import argparse
import math
import os

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.benchmark import Timer

from tinygpt.kernels import rms_norm

EPS = 1e-5
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def unfused(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """transformers' LlamaRMSNorm.forward: float32 inside, one kernel per op."""
    x32 = x.float()
    return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + EPS)).to(x.dtype)


def pytorch_op(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),), weight, EPS)


def triton_kernel(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return rms_norm(x, weight, EPS)


def median_seconds(fn, min_seconds: float) -> float:
    return Timer("fn()", globals={"fn": fn}).blocked_autorange(min_run_time=min_seconds).median


def measure(norm, x, weight, dy, min_seconds: float) -> tuple[float, float]:
    """Median seconds of the forward alone and of forward + backward (gradients of x and weight)."""
    x, weight = x.detach().requires_grad_(), weight.detach().requires_grad_()

    def forward():
        with torch.no_grad():
            norm(x, weight)

    def forward_backward():
        torch.autograd.grad(norm(x, weight), (x, weight), dy)  # returned, not accumulated into .grad

    return median_seconds(forward, min_seconds), median_seconds(forward_backward, min_seconds)


def stored_bytes(t: torch.Tensor) -> int:
    """Bytes a kernel touches to read or write t once: a broadcast (stride 0) dimension is read once."""
    return math.prod(size for size, stride in zip(t.shape, t.stride(), strict=True) if stride) * t.element_size()


class Traffic(TorchDispatchMode):
    """Every ATen op that runs (after autograd, so the backward's too), with the bytes of its tensor inputs and
    outputs: what eager PyTorch, one kernel per op, moves through memory. Views and factories move nothing."""

    def __init__(self):
        super().__init__()
        self.ops: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        aliases = [r.alias_info for r in func._schema.returns]
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        if inputs and not all(a is not None and not a.is_write for a in aliases):  # not a view, not an allocation
            outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
            self.ops.append((func.__name__, sum(map(stored_bytes, inputs + outputs))))
        return out


def print_traffic(rows: int = 64, width: int = 1024) -> None:
    print(f"# bytes read + written per element of x ({rows} x {width}), eager `unfused` against the fused kernels")
    print("| dtype | pass | PyTorch ops (one kernel each) | bytes/element, unfused | fused | ratio |")
    print("|---|---|---|---|---|---|")
    for dtype_name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        x = torch.randn(rows, width, dtype=dtype, requires_grad=True)
        weight = torch.ones(width, dtype=dtype, requires_grad=True)
        with Traffic() as forward:
            y = unfused(x, weight)
        dy = torch.randn_like(y)
        with Traffic() as backward:
            torch.autograd.grad(y, (x, weight), dy)
        for label, counted, passes in (("forward", forward, 2), ("backward", backward, 3)):
            moved = sum(b for _, b in counted.ops) / x.numel()
            fused = passes * x.element_size()
            names = " ".join(name.split(".")[0] for name, _ in counted.ops)
            print(
                f"| {dtype_name} | {label} | {len(counted.ops)}: {names} | {moved:.1f} | {fused} | {moved / fused:.1f}x |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=16384, help="rows (tokens: batch x sequence)")
    parser.add_argument("--widths", type=int, nargs="+", default=[1024, 2048, 4096, 8192], help="row widths")
    parser.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"], choices=list(DTYPES))
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True, help="time torch.compile")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="timing per measurement")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--traffic", action="store_true", help="count the unfused ops' bytes instead (CPU)")
    args = parser.parse_args()
    if args.traffic:
        return print_traffic()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here: run this on a GPU (or see --help for the interpreter's check on a CPU)")
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        raise SystemExit("--device cpu runs the kernel through Triton's interpreter: set TRITON_INTERPRET=1")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (Triton interpreter: not a timing)"
    print(f"# {name}, torch {torch.__version__}, {args.rows} rows; time = median, GB/s = a fused kernel's bytes / time")
    norms = {"unfused": unfused, "F.rms_norm": pytorch_op, "triton": triton_kernel}
    if args.compile:
        norms["compiled"] = torch.compile(unfused, dynamic=False)
    print(
        "| dtype | width | implementation | forward µs | GB/s | fwd + bwd µs | GB/s | triton's speed-up (fwd, fwd + bwd) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    torch.manual_seed(0)
    errors = []
    for dtype_name in args.dtypes:
        dtype = DTYPES[dtype_name]
        for width in args.widths:
            x = torch.randn(args.rows, width, device=device, dtype=dtype)
            dy = torch.randn_like(x)
            weight = (1 + 0.1 * torch.randn(width, device=device)).to(dtype)
            error = (triton_kernel(x, weight).float() - pytorch_op(x, weight).float()).abs().max().item()
            errors.append(f"{dtype_name} {width}: {error:.1e}")
            moved = x.numel() * x.element_size()  # bytes of one (rows, width) tensor
            times = {label: measure(norm, x, weight, dy, args.min_seconds) for label, norm in norms.items()}
            for label, (forward, both) in times.items():
                speedup = f"{forward / times['triton'][0]:.2f}x, {both / times['triton'][1]:.2f}x"
                print(
                    f"| {dtype_name} | {width} | {label} | {forward * 1e6:.1f} | {2 * moved / forward / 1e9:.0f} "
                    f"| {both * 1e6:.1f} | {5 * moved / both / 1e9:.0f} | {'' if label == 'triton' else speedup} |"
                )
    print(f"\nmax |triton - F.rms_norm| (forward): {', '.join(errors)}")


if __name__ == "__main__":
    main()
