"""The quick-preset weights shipped with the package: they score what their card and the README say, and the demo
serves them at once when nothing has been trained."""

from __future__ import annotations

import json

from classifier.artifacts import SHIPPED
from classifier.cli import main
from classifier.config import PRESETS
from dlshared import demo


def test_the_shipped_model_scores_what_its_card_says_on_the_test_split(capsys):
    recorded = json.loads((SHIPPED / "metrics.json").read_text(encoding="utf-8"))
    main(["eval", "--ckpt", str(SHIPPED)])
    out = capsys.readouterr().out
    measured = json.loads(out.strip().splitlines()[-1])
    assert measured["pictures"] == {} and "--pictures DIR" in out  # the package's folder is left as shipped
    assert not (SHIPPED / "confusion.png").exists()
    assert measured["accuracy"] == recorded["test_accuracy"]
    assert measured["accuracy"] >= 0.99  # the README's quick row: 99.54 ± 0.42% over seeds; this is seed 0
    card = (SHIPPED / "README.md").read_text(encoding="utf-8")
    assert f"{recorded['test_accuracy']:.2%}" in card and "uv run classifier train" in card


def test_the_shipped_model_is_the_quick_preset():
    config = json.loads((SHIPPED / "config.json").read_text(encoding="utf-8"))
    quick = PRESETS["quick"]
    for field in ("backbone", "widths", "blocks", "image_size", "epochs", "seed"):
        assert config[field] == (list(v) if isinstance(v := getattr(quick, field), tuple) else v), field


def test_demo_on_a_fresh_clone_serves_the_shipped_weights_without_training(tmp_path, monkeypatch):
    served = []
    monkeypatch.setattr(demo, "launch", lambda blocks, **kwargs: served.append(blocks))
    main(["demo", "--runs", str(tmp_path / "runs")])
    assert len(served) == 1 and not (tmp_path / "runs").exists()  # nothing trained, nothing written
