"""The quick-preset pipeline shipped with the package: its card states what training measured, it is the quick
preset, and the demo serves it at once when nothing has been trained. (Re-scoring it by sampling is left out: eval
trains its judge first, about 3 minutes on 2 cores.)"""

from __future__ import annotations

import json

from diffusion.cli import main
from diffusion.config import PRESETS, SHIPPED
from dlshared import demo


def test_the_card_states_what_training_measured():
    recorded = json.loads((SHIPPED / "metrics.json").read_text(encoding="utf-8"))["eval"]
    card = (SHIPPED / "README.md").read_text(encoding="utf-8")
    assert recorded["accuracy"] >= 0.99  # the README's quick row: 99.9 ± 0.1% over seeds
    assert f"**{recorded['accuracy']:.3f}**" in card and f"FID\n{recorded['fid']:.3f}" in card
    assert "uv run diffusion train" in card


def test_the_shipped_pipeline_is_the_quick_preset():
    config = json.loads((SHIPPED / "config.json").read_text(encoding="utf-8"))
    quick = PRESETS["quick"]
    for field in ("steps", "batch_size", "lr", "seed", "image_size", "prediction_type"):
        assert config[field] == getattr(quick, field), field
    assert config["block_out_channels"] == list(quick.block_out_channels)


def test_demo_on_a_fresh_clone_serves_the_shipped_pipeline_without_training(tmp_path, monkeypatch):
    served = []
    monkeypatch.setattr(demo, "launch", lambda blocks, **kwargs: served.append(blocks))
    main(["demo", "--runs", str(tmp_path / "runs")])
    assert len(served) == 1 and not (tmp_path / "runs").exists()  # nothing trained, nothing written
