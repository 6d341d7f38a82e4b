"""The quick-preset weights shipped with the package: their card states what training measured, they are the quick
preset, they find shapes they never saw, and the demo serves them at once when nothing has been trained. (Re-scoring
the 500-image test split itself is left out: rebuilding it generates 6,000 images first.)"""

from __future__ import annotations

import json

from detector.artifacts import SHIPPED
from detector.cli import main
from detector.config import PRESETS
from detector.shapes import write_shapes
from dlshared import demo


def test_the_card_states_what_training_measured():
    recorded = json.loads((SHIPPED / "metrics.json").read_text(encoding="utf-8"))
    card = (SHIPPED / "README.md").read_text(encoding="utf-8")
    assert f"{recorded['test_map']:.3f}" in card and f"{recorded['test_map_50']:.3f}" in card
    assert "uv run detector train" in card
    assert recorded["test_map_50"] >= 0.95  # seed 0 of the README's quick row (0.971 ± 0.003 over three seeds)


def test_the_shipped_model_is_the_quick_preset():
    config = json.loads((SHIPPED / "config.json").read_text(encoding="utf-8"))
    quick = PRESETS["quick"]
    for field in ("model", "widths", "depths", "fpn_width", "image_size", "epochs", "shapes_train", "seed"):
        assert config[field] == (list(v) if isinstance(v := getattr(quick, field), tuple) else v), field


def test_the_shipped_model_finds_shapes_it_never_saw_and_leaves_its_folder_alone(tmp_path, capsys):
    unseen = write_shapes(tmp_path / "unseen", n_images=24, image_size=128, seed=1234)  # training drew seed 0's
    main(["eval", "--ckpt", str(SHIPPED), "--data", str(unseen)])
    out = capsys.readouterr().out
    measured = json.loads(out.strip().splitlines()[-1])
    assert measured["map_50"] >= 0.9, measured  # untrained weights score 0.0
    assert measured["pictures"] == {} and not (SHIPPED / "detections.png").exists()


def test_demo_on_a_fresh_clone_serves_the_shipped_weights_without_training(tmp_path, monkeypatch):
    served = []
    monkeypatch.setattr(demo, "launch", lambda blocks, **kwargs: served.append(blocks))
    main(["demo", "--runs", str(tmp_path / "runs")])
    assert len(served) == 1 and not (tmp_path / "runs").exists()  # nothing trained, nothing written
