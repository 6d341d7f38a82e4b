"""The tiny pipeline end to end: pretrain -> LoRA SFT -> LoRA DPO -> evaluation; artifacts, resume, eval."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from tuner import artifacts
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


def assert_png(path: Path, min_width: int = 400, min_height: int = 150) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= min_width and image.height >= min_height, image.size


def test_eval_reproduces_the_saved_metrics(tiny_run, capsys):
    main(["eval", "--ckpt", tiny_run["run_dir"]])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key, value in result.items():
        if "/" in key:
            assert value == tiny_run[key], key
    assert result["pictures"] == {"answers": str(Path(tiny_run["run_dir"]) / "answers.png")}  # no --pictures


def test_train_draws_every_stages_curve_and_tensorboard_gets_it(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = Path(tiny_run["run_dir"])
    assert_png(run / "curves.png")
    assert "curves" in EventAccumulator(str(run / "logs" / "pictures")).Reload().Tags()["images"]
    # what the picture draws, kept small in metrics.json: pretraining's loss a mean every 20 steps, trl's log lines
    tiny = PRESETS["tiny"]
    assert [h["step"] for h in tiny_run["pretrain_history"]] == [20, tiny.pretrain_steps]
    assert [h["step"] for h in tiny_run["sft_history"]] == list(range(1, tiny.sft_steps + 1))  # logging_steps 1
    assert tiny_run["sft_history"][0]["sft_loss"] == tiny_run["sft_loss_first"]
    assert tiny_run["dpo_history"][0]["dpo_loss"] == tiny_run["dpo_loss_first"]
    assert tiny_run["dpo_history"][-1]["reward_accuracy"] == tiny_run["dpo_train_reward_acc"]
    assert tiny_run["dpo_history"][-1]["reward_margin"] == tiny_run["dpo_train_margin"]


def test_eval_draws_the_answers_the_task_metric_graded(tiny_run, tmp_path, capsys):
    from tuner.artifacts import run_config
    from tuner.data import load_task_data
    from tuner.pictures import answer_rows

    main(["eval", "--ckpt", tiny_run["run_dir"], "--pictures", str(tmp_path / "pictures")])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["pictures"] == {"answers": str(tmp_path / "pictures" / "answers.png")}
    assert_png(tmp_path / "pictures" / "answers.png")
    # the rows of the table are the greedy answers evaluate graded: over all held-out prompts, its numbers again
    run = Path(tiny_run["run_dir"])
    cfg = run_config(run)
    data = load_task_data(cfg)
    compared, rows = answer_rows(run, cfg, data, n=len(data.eval_items))
    assert compared == ["base", "dpo"] and len(rows) == PRESETS["tiny"].eval_prompts
    for stage in compared:
        verdicts = [row["answers"][stage][1] for row in rows]
        assert sum(c and f for c, f in verdicts) / len(rows) == tiny_run[f"{stage}/task"], stage
        assert sum(c for c, _ in verdicts) / len(rows) == tiny_run[f"{stage}/correct"], stage
        shown = [row["prompt"].replace("\n", " ") + row["answers"][stage][0] for row in rows[:3]]
        assert shown == tiny_run[f"{stage}/samples"], stage


def test_eval_draws_nothing_into_the_shipped_weights_folder(tiny_run, monkeypatch, capsys):
    run = Path(tiny_run["run_dir"])
    monkeypatch.setattr(artifacts, "SHIPPED", run)  # as if this run were the package's weights/quick
    (run / "answers.png").unlink(missing_ok=True)
    main(["eval", "--ckpt", str(run), "--eval-prompts", "2"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["pictures"] == {} and not (run / "answers.png").exists()


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
        "curves.png",
        "logs",
        "metrics.json",
    ]
    assert "pretrain_loss_last" in again
    # a run on another base is not continued on this one
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--preset", "tiny", "--out", str(tmp_path), "--name", "o", "--resume", "--base", "x"])
    assert exit_info.value.code == 2 and "was trained on base embedded" in capsys.readouterr().err
