"""The tiny pipeline end to end: pretrain -> LoRA SFT -> LoRA DPO -> evaluation; artifacts, resume, eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuner.cli import main
from tuner.config import PRESETS, replace

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


def test_every_stage_leaves_a_loadable_artifact(tiny_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = Path(tiny_run["run_dir"])
    model = AutoModelForCausalLM.from_pretrained(run / "base")  # the embedded base is an ordinary HF folder
    assert type(model).__name__ == "LlamaForCausalLM"
    assert AutoTokenizer.from_pretrained(run / "base").eos_token == "<eos>"
    for stage in ("sft", "dpo"):
        config = json.loads((run / stage / "adapter_config.json").read_text())
        assert config["peft_type"] == "LORA" and config["r"] == PRESETS["tiny"].lora_r
    from safetensors import safe_open

    with safe_open(run / "dpo" / "adapter_model.safetensors", "pt") as f:
        # trl's frozen reference copy of the adapter is not saved (safe_open has keys(), no __iter__)
        assert not [k for k in f.keys() if ".ref." in k]  # noqa: SIM118
    assert not list(run.glob(".*.tmp"))
    assert list((run / "logs").rglob("events.out.tfevents.*"))


def test_the_losses_fall_and_metrics_cover_every_model(tiny_run):
    m = tiny_run
    assert m["pretrain_loss_last"] < m["pretrain_loss_first"]
    assert m["lora_trainable_params"] > 0 and m["lora_trainable_percent"] < 100
    assert m["dpo_loss_last"] < m["dpo_loss_first"]
    for stage in ("base", "sft", "dpo"):
        for key in ("task", "correct", "formatted", "logp_pref_acc"):
            assert 0 <= m[f"{stage}/{key}"] <= 1
        assert m[f"{stage}/task"] <= min(m[f"{stage}/correct"], m[f"{stage}/formatted"])
    assert 0 <= m["dpo/pref_acc"] <= 1 and m["heldout_pairs"] == PRESETS["tiny"].eval_prompts
    saved = json.loads((Path(m["run_dir"]) / "metrics.json").read_text())
    assert saved["dpo/pref_acc"] == m["dpo/pref_acc"]


def test_eval_reproduces_the_saved_metrics(tiny_run, capsys):
    main(["eval", "--ckpt", tiny_run["run_dir"]])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key, value in result.items():
        if "/" in key:
            assert value == tiny_run[key], key


def test_resume_skips_finished_stages_and_a_single_stage_reruns(tiny_run, tmp_path):
    from tuner.train import train

    cfg = replace(PRESETS["tiny"], out=tmp_path, name="r")
    first = train(replace(cfg, stage="pretrain"))
    assert "pretrain_loss_last" in first and "sft/task" not in first
    mtime = (tmp_path / "tuner" / "r" / "base" / "model.safetensors").stat().st_mtime
    resumed = train(replace(cfg, resume=True))  # pretrain is done: only SFT and DPO run
    assert (tmp_path / "tuner" / "r" / "base" / "model.safetensors").stat().st_mtime == mtime
    assert resumed["pretrain_loss_last"] == first["pretrain_loss_last"]  # kept from the first call
    assert "dpo/pref_acc" in resumed
    # the same seed and preset give the same numbers
    for key in ("sft/task", "dpo/pref_acc", "dpo/dpo_loss", "sft_loss_last"):
        assert resumed[key] == tiny_run[key], key
