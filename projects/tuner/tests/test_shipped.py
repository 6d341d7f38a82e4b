"""The quick-preset run shipped with the package (base, SFT and DPO adapters): it scores what its card says, and
the demo serves it at once when nothing has been trained."""

from __future__ import annotations

import json

from dlshared import demo
from tuner.artifacts import SHIPPED
from tuner.cli import main
from tuner.config import PRESETS


def test_the_shipped_run_scores_what_training_measured_and_its_card_says(capsys):
    recorded = json.loads((SHIPPED / "metrics.json").read_text(encoding="utf-8"))
    main(["eval", "--ckpt", str(SHIPPED)])
    measured = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("base/arith", "base/task", "sft/correct", "sft/task", "dpo/task", "dpo/formatted", "dpo/pref_acc"):
        assert measured[key] == recorded[key], key  # greedy decoding of the same weights on the same prompts
    assert measured["dpo/task"] >= 0.6 and measured["pictures"] == {}  # the README's target; nothing drawn here
    card = (SHIPPED / "README.md").read_text(encoding="utf-8")
    assert f"**{recorded['dpo/task']:.3f}**" in card and "uv run tuner train" in card


def test_the_shipped_run_is_the_quick_preset():
    config = json.loads((SHIPPED / "config.json").read_text(encoding="utf-8"))
    quick = PRESETS["quick"]
    for field in ("pretrain_steps", "sft_steps", "dpo_steps", "lora_r", "seed", "data_seed"):
        assert config[field] == getattr(quick, field), field


def test_demo_on_a_fresh_clone_serves_the_shipped_run_without_training(tmp_path, monkeypatch):
    served = []
    monkeypatch.setattr(demo, "launch", lambda blocks, **kwargs: served.append(blocks))
    main(["demo", "--runs", str(tmp_path / "runs")])
    assert len(served) == 1 and not (tmp_path / "runs").exists()  # nothing trained, nothing written
