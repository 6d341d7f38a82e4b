"""A run's config read back, and the config `--resume` continues with: the run's own, typed flags on top."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from dlshared.checkpoint import load_weights, read_json_object
from dlshared.cli import Positive, UserError
from dlshared.configs import config_from_dict, read_config, resume_from_run, typed_fields
from dlshared.display import BadImage, open_image


@dataclasses.dataclass
class Cfg:
    widths: tuple[Positive, ...] = (8, 16)
    data: Path | None = None
    epochs: Positive = 3
    device: str = "auto"
    out: Path = Path("runs")
    name: str | None = None
    resume: bool = False
    overwrite: bool = False


def test_config_from_dict_restores_tuples_and_paths_and_ignores_unknown_keys():
    cfg = config_from_dict(Cfg, {"widths": [4, 4], "data": "d/x", "out": "r", "from_a_newer_version": 1})
    assert cfg == Cfg(widths=(4, 4), data=Path("d/x"), out=Path("r"))
    with pytest.raises(UserError, match="--epochs 0"):
        config_from_dict(Cfg, {"epochs": 0})


def test_typed_fields_reads_every_flag_form():
    assert typed_fields(["--epochs", "4", "--widths=2", "--no-resume", "--other", "1"], Cfg) == {
        "epochs",
        "widths",
        "resume",
    }


def saved_run(root: Path, **fields) -> Path:
    run = root / "proj" / "r1"
    run.mkdir(parents=True)
    (run / "config.json").write_text(
        json.dumps(
            {
                k: str(v) if isinstance(v, Path) else v
                for k, v in dataclasses.asdict(Cfg(out=root, name="r1", **fields)).items()
            }
        ),
        encoding="utf-8",
    )
    (run / "resume.pt").write_bytes(b"")
    return run


def test_resume_continues_under_the_runs_config_with_safe_typed_flags_on_top(tmp_path):
    saved_run(tmp_path, widths=(32, 64), epochs=5)
    given = Cfg(out=tmp_path, resume=True, device="cpu", epochs=9)  # the preset's widths, nothing typed for them
    resumed = resume_from_run(given, {"device", "resume"}, "proj", may_change=("device",))
    assert resumed.widths == (32, 64) and resumed.epochs == 5 and resumed.device == "cpu" and resumed.name == "r1"
    with pytest.raises(UserError, match="--widths \\(4,\\): .* was trained with \\(32, 64\\)"):
        resume_from_run(dataclasses.replace(given, widths=(4,)), {"widths"}, "proj", may_change=("device",))
    nothing = Cfg(out=tmp_path / "empty", resume=True)
    assert resume_from_run(nothing, set(), "proj", ()) is nothing  # the training verb says "nothing to resume"


def test_damaged_json_and_weights_are_one_line_errors(tmp_path):
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match="config.json cannot be read as JSON"):
        read_json_object(tmp_path / "config.json")
    (tmp_path / "list.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(UserError, match="expected a JSON object"):
        read_config(tmp_path / "list.json", Cfg)
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(3, 3)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(UserError, match="w.safetensors holds weights of another model"):
        load_weights(torch.nn.Linear(2, 2, bias=False), tmp_path / "w.safetensors")
    (tmp_path / "cut.safetensors").write_bytes((tmp_path / "w.safetensors").read_bytes()[:40])
    with pytest.raises(UserError, match="cut.safetensors is damaged"):
        load_weights(torch.nn.Linear(3, 3, bias=False), tmp_path / "cut.safetensors")


def test_open_image_refuses_bombs_and_truncated_files_before_decoding(tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 64), "red").save(tmp_path / "ok.png")
    assert open_image(str(tmp_path / "ok.png")).size == (64, 64)
    assert open_image({"path": str(tmp_path / "ok.png")}).size == (64, 64)
    Image.new("L", (3000, 3000)).save(tmp_path / "big.png")
    with pytest.raises(BadImage, match="the limit is 1,000,000 pixels"):
        open_image(str(tmp_path / "big.png"), max_pixels=1_000_000)
    (tmp_path / "cut.png").write_bytes((tmp_path / "big.png").read_bytes()[:2000])
    with pytest.raises(BadImage, match="truncated or damaged"):
        open_image(str(tmp_path / "cut.png"))
    (tmp_path / "notes.png").write_text("not an image", encoding="utf-8")
    with pytest.raises(BadImage, match="not an image file"):
        open_image(str(tmp_path / "notes.png"))
    with pytest.raises(BadImage, match="No image"):
        open_image(None)
