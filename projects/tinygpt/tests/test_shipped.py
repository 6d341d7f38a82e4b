"""The quick-preset model shipped with the package: it scores what its card says, and the demo serves it at once
when nothing has been trained."""

from __future__ import annotations

import json
import sys

import pytest

from dlshared import demo
from tinygpt.artifacts import SHIPPED, load_model
from tinygpt.cli import main
from tinygpt.config import PRESETS


def test_the_shipped_model_scores_what_its_card_says_on_its_validation_split(capsys):
    recorded = json.loads((SHIPPED / "metrics.json").read_text(encoding="utf-8"))
    main(["eval", "--ckpt", str(SHIPPED)])
    measured = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # the folder belongs to the installed package: eval draws nothing into it unless --pictures says where
    assert measured["pictures"] == {} and not (SHIPPED / "attention.png").exists()
    # the corpus is this Python's standard library: the figure is exact on the version that trained the model
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    if recorded["data"] == f"Python {python} stdlib source":
        assert measured["loss"] == recorded["val_loss"]
    else:
        assert measured["loss"] == pytest.approx(recorded["val_loss"], abs=0.1)
    card = (SHIPPED / "README.md").read_text(encoding="utf-8")
    assert f"{recorded['val_loss']:.4f}" in card and "uv run tinygpt train" in card


def test_the_shipped_model_is_the_quick_preset():
    config = json.loads((SHIPPED / "config.json").read_text(encoding="utf-8"))
    quick = PRESETS["quick"]
    for field in ("arch", "objective", "n_layer", "n_head", "n_embd", "block_size", "max_iters", "tokenizer"):
        assert config[field] == getattr(quick, field), field
    loaded = load_model(SHIPPED, "cpu")
    assert loaded.model.num_params() == json.loads((SHIPPED / "metrics.json").read_text(encoding="utf-8"))["parameters"]


def test_demo_on_a_fresh_clone_serves_the_shipped_model_without_training(tmp_path, monkeypatch):
    served = []
    monkeypatch.setattr(demo, "launch", lambda blocks, **kwargs: served.append(blocks))
    main(["demo", "--runs", str(tmp_path / "runs")])
    assert len(served) == 1 and not (tmp_path / "runs").exists()  # nothing trained, nothing written
