"""`dlshared.profiling`: a few training steps under torch.profiler give a readable trace and a top-operators table."""

from __future__ import annotations

import json

import pytest
import torch

from dlshared.cli import UserError
from dlshared.outputs import MARKER
from dlshared.profiling import profile_steps, profiled


def tiny_step():
    """One SGD step of a two-layer MLP on a fixed batch of 32: forward 2 x (32 x 64 x 128 + 32 x 128 x 10) FLOPs."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 64), torch.randint(10, (32,))

    def step() -> None:
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def test_profile_steps_writes_a_chrome_trace_and_a_table_of_the_ops(tmp_path):
    out = tmp_path / "profile"
    summary = profile_steps(tiny_step(), out, wait=1, warmup=1, active=2)
    trace = json.loads((out / "trace.json").read_text(encoding="utf-8"))
    names = {event.get("name") for event in trace["traceEvents"]}
    assert {"aten::addmm", "aten::mm", "ProfilerStep#2", "ProfilerStep#3"} <= names  # the two active steps
    assert "ProfilerStep#1" not in names  # the profiler's warm-up step is thrown away
    table = (out / "top_ops.txt").read_text(encoding="utf-8")
    assert "aten::addmm" in table and "Self CPU" in table
    assert "| `aten::addmm` |" in (out / "top_ops.md").read_text(encoding="utf-8")
    assert summary["profiled_steps"] == 2 and summary["trace"] == str(out / "trace.json")
    assert summary["cpu_ms_per_step"] > 0 and len(summary["top_ops"]) == 5
    # the counted FLOPs against the hand count: forward 2*B*(64*128 + 128*10); backward the weight gradients of
    # both layers and the input gradient of the second (the first layer's input needs none)
    forward = 2 * 32 * (64 * 128 + 128 * 10)
    backward = 2 * 32 * (64 * 128 + 128 * 10) + 2 * 32 * 128 * 10
    assert summary["flops_per_step"] == forward + backward
    assert (out / MARKER).is_file()


def test_a_profile_replaces_its_own_folder_but_no_other(tmp_path):
    out = tmp_path / "profile"
    profile_steps(tiny_step(), out, wait=0, warmup=1, active=1)
    profile_steps(tiny_step(), out, wait=0, warmup=1, active=1)  # an earlier profile is replaced
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(UserError, match="was not written by this tool"):
        profile_steps(tiny_step(), mine, active=1)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_a_loop_it_cannot_edit_is_profiled_through_the_optimizer_and_too_few_steps_are_an_error(tmp_path):
    step = tiny_step()
    with profiled(tmp_path / "hooked", wait=0, warmup=1, active=1, on_optimizer_step=True) as profile:
        for _ in range(3):  # the third step runs after the profile is written
            step()
    assert profile.summary["profiled_steps"] == 1
    with pytest.raises(UserError, match="needs 3 steps"), profiled(tmp_path / "short", 1, 1, 1) as profile:
        step()
        profile.step()
    assert not (tmp_path / "short").exists()
