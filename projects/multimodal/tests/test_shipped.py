"""The quick-preset model shipped with the package (float16): it scores what training measured and its card says,
and the demo serves it at once when nothing has been trained."""

from __future__ import annotations

import json

import pytest

from dlshared import demo
from multimodal.artifacts import SHIPPED
from multimodal.cli import main
from multimodal.config import PRESETS


def test_the_shipped_model_scores_what_training_measured_and_its_card_says(capsys):
    recorded = json.loads((SHIPPED / "metrics.json").read_text(encoding="utf-8"))["test"]
    main(["eval", "--ckpt", str(SHIPPED)])
    measured = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["test"]
    for split in ("seen", "unseen"):  # float16 storage moves a figure by at most a rounding step
        assert measured[split]["zero_shot_mean"] == pytest.approx(recorded[split]["zero_shot_mean"], abs=0.003)
        assert measured[split]["text_to_image_r1"] == pytest.approx(recorded[split]["text_to_image_r1"], abs=0.003)
    card = (SHIPPED / "README.md").read_text(encoding="utf-8")
    assert f"**{measured['seen']['zero_shot_mean']:.3f}**" in card
    assert f"**{measured['unseen']['zero_shot_mean']:.3f}**" in card and "uv run multimodal train" in card


def test_the_shipped_model_is_the_quick_preset():
    config = json.loads((SHIPPED / "config.json").read_text(encoding="utf-8"))
    quick = PRESETS["quick"]
    for field in ("model", "train_scenes", "epochs", "batch_size", "lr", "seed", "data_seed"):
        assert config[field] == getattr(quick, field), field


def test_demo_on_a_fresh_clone_serves_the_shipped_model_without_training(tmp_path, monkeypatch):
    served = []
    monkeypatch.setattr(demo, "launch", lambda blocks, **kwargs: served.append(blocks))
    main(["demo", "--runs", str(tmp_path / "runs")])
    assert len(served) == 1 and not (tmp_path / "runs").exists()  # nothing trained, nothing written
