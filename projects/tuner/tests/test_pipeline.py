"""The tiny pipeline end to end: pretrain -> LoRA SFT -> LoRA DPO -> evaluation; artifacts, resume, eval."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tuner.cli import main
from tuner.config import PRESETS

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


def test_every_stage_leaves_a_loadable_artifact(tiny_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = Path(tiny_run["run_dir"])
    model = AutoModelForCausalLM.from_pretrained(run / "base")  # the embedded base is an ordinary HF folder
    assert type(model).__name__ == "LlamaForCausalLM"
    assert AutoTokenizer.from_pretrained(run / "base").eos_token == "<eos>"
    for stage in ("sft", "dpo"):
        config = json.loads((run / stage / "adapter_config.json").read_text(encoding="utf-8"))
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
    saved = json.loads((Path(m["run_dir"]) / "metrics.json").read_text(encoding="utf-8"))
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
    run = tmp_path / "tuner" / "r"
    first = train(replace(cfg, stage="pretrain"))
    assert "pretrain_loss_last" in first and "sft/task" not in first
    mtime = (run / "base" / "model.safetensors").stat().st_mtime_ns
    resumed = train(replace(cfg, resume=True))  # pretrain is done: only SFT and DPO run
    assert (run / "base" / "model.safetensors").stat().st_mtime_ns == mtime
    assert resumed["pretrain_loss_last"] == first["pretrain_loss_last"]  # kept from the first call
    assert "dpo/pref_acc" in resumed
    # the same seed and preset give the same numbers
    for key in ("sft/task", "dpo/pref_acc", "dpo/dpo_loss", "sft_loss_last"):
        assert resumed[key] == tiny_run[key], key

    # one stage of this run again (--stage dpo --resume): a new dpo/ folder, the same numbers, the rest kept
    dpo_mtime = (run / "dpo" / "adapter_model.safetensors").stat().st_mtime_ns
    rerun = train(replace(cfg, stage="dpo", resume=True))
    assert (run / "dpo" / "adapter_model.safetensors").stat().st_mtime_ns != dpo_mtime
    assert (run / "base" / "model.safetensors").stat().st_mtime_ns == mtime
    for key in ("dpo_loss_last", "dpo/pref_acc", "dpo/dpo_loss", "sft_loss_last", "pretrain_loss_last"):
        assert rerun[key] == resumed[key], key


def test_overwrite_replaces_a_run_and_a_resumed_run_keeps_its_base(tiny_run, tmp_path, capsys):
    from tuner.train import train

    cfg = replace(PRESETS["tiny"], out=tmp_path, name="o", stage="pretrain")
    train(cfg)
    (tmp_path / "tuner" / "o" / "note.txt").write_text("made by the first run", encoding="utf-8")
    again = train(replace(cfg, overwrite=True))
    assert sorted(p.name for p in (tmp_path / "tuner" / "o").iterdir()) == [
        "base",
        "config.json",
        "logs",
        "metrics.json",
    ]
    assert "pretrain_loss_last" in again
    # a run on another base is not continued on this one
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--preset", "tiny", "--out", str(tmp_path), "--name", "o", "--resume", "--base", "x"])
    assert exit_info.value.code == 2 and "was trained on base embedded" in capsys.readouterr().err
