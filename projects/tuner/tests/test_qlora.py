"""QLoRA: the 4-bit base (bitsandbytes NF4) under the same LoRA pipeline. CUDA only; skipped elsewhere, where
the CLI's own message is tested instead (test_cli.py)."""

from __future__ import annotations

import importlib.util

import pytest

from tuner.config import PRESETS, replace


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="needs bitsandbytes")
def test_the_tiny_pipeline_runs_on_a_4bit_base(tiny_run, tmp_path):
    from tuner.train import train

    base = f"{tiny_run['run_dir']}/base"
    metrics = train(replace(PRESETS["tiny"], base=base, quantize="4bit", out=tmp_path, name="q"))
    assert metrics["lora_trainable_params"] > 0 and 0 <= metrics["dpo/pref_acc"] <= 1
