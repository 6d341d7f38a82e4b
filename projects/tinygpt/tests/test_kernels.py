"""The fused Triton RMSNorm of kernels.py against PyTorch's op: forward, backward, widths that are not powers of
two, strided rows, bf16; and the llama model running it gives the loss and gradients of the model running
PyTorch's op, with the same state-dict keys and export.

Without a GPU the kernels run on the CPU through Triton's interpreter, which Triton picks when `@triton.jit`
decorates a function (its own `tl.sum` included), i.e. when Triton is first imported, and a test session has
usually imported it long before (transformers does). So this file also runs as a script in a fresh process with
TRITON_INTERPRET=1: the script computes the kernel's outputs and saves them; the tests here compute PyTorch's and
compare. With CUDA, the `gpu` test runs the compiled kernels as well.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from tinygpt import model as model_module
from tinygpt.model import GPT, GPTConfig, RMSNorm

EPS = 1e-5
CASES = {  # name: shape, dtype, strided (rows further apart in memory than they are wide, and a strided gradient)
    "pow2": ((4, 64), torch.float32, False),
    "masked": ((3, 5, 96), torch.float32, False),  # 96 lanes of a 128-wide block
    "odd": ((7, 33), torch.float32, False),
    "one": ((1, 1), torch.float32, False),
    "strided": ((4, 6, 24), torch.float32, True),
    "bf16": ((6, 48), torch.bfloat16, False),
}


def case_inputs(shape, dtype, strided):
    """x, weight, dy; the same in every process (seeded)."""
    g = torch.Generator().manual_seed(0)
    stored = (*shape[:-1], shape[-1] + 16) if strided else shape
    x = (3 * torch.randn(stored, generator=g)).to(dtype)  # not unit scale: the norm has something to undo
    weight = (1 + 0.3 * torch.randn(shape[-1], generator=g)).to(dtype)  # not ones: its gradient shows
    dy = torch.randn(stored, generator=g).to(dtype)
    if strided:
        x, dy = x[..., : shape[-1]], dy.transpose(0, 1).contiguous().transpose(0, 1)[..., : shape[-1]]
    return x, weight, dy


def norm_and_grads(norm, x, weight, dy):
    x, weight = x.detach().requires_grad_(), weight.detach().requires_grad_()
    y = norm(x, weight)
    y.backward(dy)
    return {"y": y, "dx": x.grad, "dw": weight.grad}


def llama(triton_kernels: bool) -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=24, arch="llama")
    model = GPT(dataclasses.replace(cfg, triton_kernels=triton_kernels))
    with torch.no_grad():  # norm gains off their initial ones, so a wrong weight gradient shows
        for module in model.modules():
            if isinstance(module, RMSNorm):
                module.weight.add_(0.2 * torch.randn_like(module.weight))
    return model


def loss_and_grads(model: GPT) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    idx, targets = torch.randint(40, (2, 16), generator=g), torch.randint(40, (2, 16), generator=g)
    loss = model(idx, targets)[1]
    loss.backward()
    return {"loss": loss.detach(), **{f"grad.{name}": p.grad for name, p in model.named_parameters()}}


def run_interpreted(out: Path) -> None:
    """The script's work, in a process started with TRITON_INTERPRET=1: the kernels' outputs, saved to `out`."""
    from tinygpt import kernels

    torch.set_num_threads(1)
    outputs = {}
    for name, case in CASES.items():
        got = norm_and_grads(lambda x, w: kernels.rms_norm(x, w, EPS), *case_inputs(*case))
        outputs |= {f"{name}.{key}": value for key, value in got.items()}
    calls = []
    model_module.TRITON_DEVICES = ("cpu",)  # where the interpreter runs the kernels
    real = kernels.rms_norm
    kernels.rms_norm = lambda *args: calls.append(1) or real(*args)
    outputs |= {f"model.{key}": value for key, value in loss_and_grads(llama(triton_kernels=True)).items()}
    outputs["model.kernel_calls"] = torch.tensor(len(calls))
    save_file({key: value.contiguous() for key, value in outputs.items()}, out)


@pytest.fixture(scope="module")
def interpreted(tmp_path_factory) -> dict[str, torch.Tensor]:
    pytest.importorskip("triton")
    out = tmp_path_factory.mktemp("kernels") / "outputs.safetensors"
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, __file__, str(out)], env=env, capture_output=True, text=True, timeout=300)
    if done.returncode:
        pytest.fail(f"the kernels failed under Triton's interpreter:\n{done.stderr[-3000:]}")
    return load_file(out)


@pytest.mark.parametrize("name", CASES)
def test_forward_and_backward_match_pytorch(interpreted, name):
    x, weight, dy = case_inputs(*CASES[name])
    # PyTorch's op in float32, its results rounded to the inputs' dtype (bf16: the kernel must be within one
    # rounding step of them, assert_close's bf16 tolerance; float32: to float32 rounding)
    want = norm_and_grads(lambda x, w: F.rms_norm(x.float(), (x.size(-1),), w.float(), EPS), x, weight, dy.float())
    for key in ("y", "dx", "dw"):
        got = interpreted[f"{name}.{key}"]
        assert got.dtype == x.dtype and got.shape == want[key].shape, key
        tolerance = {} if x.dtype == torch.bfloat16 else {"atol": 1e-5, "rtol": 1e-5}
        torch.testing.assert_close(got, want[key].to(x.dtype), **tolerance, msg=lambda m, key=key: f"{key}: {m}")


def test_the_model_trains_through_the_kernel_to_pytorchs_loss_and_gradients(interpreted):
    assert interpreted["model.kernel_calls"].item() == 2 * 2 + 1  # two norms a block, two blocks, the final norm
    want = loss_and_grads(llama(triton_kernels=False))
    got = {key.removeprefix("model."): value for key, value in interpreted.items() if key.startswith("model.")}
    assert got.keys() - {"kernel_calls"} == want.keys()
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, atol=1e-6, rtol=1e-5, msg=lambda m, key=key: f"{key}: {m}")


def test_rows_too_wide_for_one_program_use_pytorch(monkeypatch):
    from tinygpt import kernels

    monkeypatch.setattr(kernels.FusedRMSNorm, "apply", None)  # the kernel is not called: PyTorch's op is
    width = kernels.MAX_FUSED_BYTES // 4 + 1
    x, weight = torch.randn(2, width), torch.rand(width)
    torch.testing.assert_close(kernels.rms_norm(x, weight, EPS), F.rms_norm(x, (width,), weight, EPS))


def test_the_kernel_changes_neither_the_checkpoint_nor_the_export():
    from tinygpt.export import to_hf  # here: the script's process has no use for transformers

    with_kernel, without = llama(True), llama(False)
    assert isinstance(with_kernel.norm, torch.nn.RMSNorm)  # a subclass: what handles nn.RMSNorm handles it
    assert with_kernel.norm.fused and not without.norm.fused
    assert with_kernel.state_dict().keys() == without.state_dict().keys()
    hf_model = to_hf(with_kernel.eval())
    assert type(hf_model).__name__ == "LlamaForCausalLM"
    assert hf_model.state_dict().keys() == to_hf(without.eval()).state_dict().keys()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_kernels_on_cuda_match_pytorch(dtype):
    from tinygpt import kernels

    g = torch.Generator().manual_seed(0)
    x, dy = torch.randn(512, 1000, generator=g), torch.randn(512, 1000, generator=g)
    weight = 1 + 0.3 * torch.randn(1000, generator=g)
    x, weight, dy = (t.to("cuda", dtype) for t in (x, weight, dy))
    got = norm_and_grads(lambda x, w: kernels.rms_norm(x, w, EPS), x, weight, dy)
    want = norm_and_grads(lambda x, w: F.rms_norm(x.float(), (1000,), w.float(), EPS), x, weight, dy.float())
    tolerance = {} if dtype == torch.bfloat16 else {"atol": 1e-5, "rtol": 1e-5}
    for key in ("y", "dx"):
        torch.testing.assert_close(got[key], want[key].to(dtype), **tolerance)
    # dw sums 512 rows: the kernel's order of summation differs from PyTorch's
    torch.testing.assert_close(
        got["dw"].float(), want["dw"].float(), atol=1e-3, rtol=1e-3 if dtype == torch.float32 else 2e-2
    )


if __name__ == "__main__":  # the fixture's subprocess
    run_interpreted(Path(sys.argv[1]))
