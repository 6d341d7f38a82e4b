"""The quick-preset model shipped with the package: it scores what its card says, and the demo serves it at once
when nothing has been trained."""

from __future__ import annotations

import json

from dlshared import demo
from graph.artifacts import SHIPPED
from graph.cli import main
from graph.config import PRESETS


def test_the_shipped_model_scores_what_its_card_says_on_the_test_nodes(capsys):
    recorded = json.loads((SHIPPED / "metrics.json").read_text(encoding="utf-8"))
    main(["eval", "--ckpt", str(SHIPPED)])
    measured = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert measured["test_accuracy"] == recorded["model_test_accuracy"]  # the same nodes, the same weights
    assert measured["test_accuracy"] >= 0.80  # the README's quick row: 82.1 ± 0.7% over 10 seeds; this is seed 0
    card = (SHIPPED / "README.md").read_text(encoding="utf-8")
    assert f"{recorded['model_test_accuracy']:.1%}" in card and "uv run graph train" in card


def test_the_shipped_model_is_the_quick_preset():
    config = json.loads((SHIPPED / "config.json").read_text(encoding="utf-8"))
    quick = PRESETS["quick"]
    for field in ("model", "hidden", "layers", "epochs", "lr", "seed"):
        assert config[field] == getattr(quick, field), field


def test_demo_on_a_fresh_clone_serves_the_shipped_model_without_training(tmp_path, monkeypatch):
    served = []
    monkeypatch.setattr(demo, "launch", lambda blocks, **kwargs: served.append(blocks))
    main(["demo", "--runs", str(tmp_path / "runs")])
    assert len(served) == 1 and not (tmp_path / "runs").exists()  # nothing trained, nothing written
