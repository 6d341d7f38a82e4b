"""QLoRA: the 4-bit base (bitsandbytes NF4) under the same LoRA pipeline. CUDA only; skipped elsewhere, where
the CLI's own message is tested instead (test_cli.py)."""

from __future__ import annotations

import importlib.util
from dataclasses import replace

import pytest

from tuner.config import PRESETS


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="needs bitsandbytes")
def test_the_tiny_pipeline_runs_on_a_4bit_base(tiny_run, tmp_path):
    import bitsandbytes as bnb

    from tuner.artifacts import load_stage
    from tuner.train import train

    base = f"{tiny_run['run_dir']}/base"
    metrics = train(replace(PRESETS["tiny"], base=base, quantize="4bit", out=tmp_path, name="q"))
    # the same adapters as on the full-precision base: QLoRA changes how the frozen weights are stored, not LoRA
    assert metrics["lora_trainable_params"] == tiny_run["lora_trainable_params"]
    # the saved DPO model loads back on a base whose linear layers really are 4-bit
    model, _ = load_stage(tmp_path / "tuner" / "q", "dpo")
    assert any(isinstance(module, bnb.nn.Linear4bit) for module in model.modules())
    assert {"dpo/pref_acc", "dpo/task", "sft/task"} <= metrics.keys()
