"""Bad input from a user: every flag's bad values, rules between flags, folders that must not be written into,
damaged or foreign files; each ends as one line on stderr with exit code 2 and creates nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from detector.cli import main
from detector.config import BenchArgs, ConvertArgs, DemoArgs, EvalArgs, ExportArgs, SegmentationConfig, TrainConfig
from dlshared.cli import UserError, field_checks
from dlshared.testing import (
    assert_damaged_run_refused,
    assert_one_line_error,
    assert_output_folder_guarded,
    bad_flag_cases,
)

VERBS = {
    "train": TrainConfig,
    "segment": SegmentationConfig,
    "eval": EvalArgs,
    "export": ExportArgs,
    "bench": BenchArgs,
    "demo": DemoArgs,
    "convert-pennfudan": ConvertArgs,
}
PRESET_VERBS = ("train", "segment")
CASES = [(verb, flag, value) for verb, config in VERBS.items() for flag, value in bad_flag_cases(config)]
# rules between fields, checked before any folder (or the synthetic shapes) is made
RELATIONS = [
    ("train", ["--widths", "16", "32"], "three stages"),
    ("train", ["--depths", "1", "1", "1", "1"], "three stages"),
    ("train", ["--widths", "1", "16", "32"], "2 or more channels"),
    ("train", ["--image-size", "66"], "multiple of 4"),
    ("segment", ["--widths", "8"], "two or more"),
]


def _argv(verb: str, flags: list[str]) -> list[str]:
    return [verb, *flags, "--preset", "tiny"] if verb in PRESET_VERBS else [verb, *flags]


@pytest.fixture
def empty_cwd(tmp_path, monkeypatch) -> Path:
    """An empty working folder (./runs would appear here), and a HOME of its own (~/.cache/capstones/...)."""
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CAPSTONES_CACHE", raising=False)
    return tmp_path / "cwd"


def _nothing_made(cwd: Path) -> bool:
    return not any(cwd.iterdir()) and not (cwd.parent / "home" / ".cache" / "capstones").exists()


@pytest.mark.parametrize("verb, flag, value", CASES, ids=[f"{v}{f}={x}" for v, f, x in CASES])
def test_every_bad_flag_value_is_one_line_and_creates_nothing(verb, flag, value, empty_cwd, capsys):
    err = assert_one_line_error(main, _argv(verb, [flag, value]), capsys)
    assert flag in err
    assert _nothing_made(empty_cwd)


@pytest.mark.parametrize("verb", VERBS)
def test_every_numeric_flag_declares_its_check(verb):
    numeric = {flag for flag, value in bad_flag_cases(VERBS[verb]) if value == "many"}  # int and float fields
    assert numeric <= {f"--{name.replace('_', '-')}" for name in field_checks(VERBS[verb])}


@pytest.mark.parametrize("verb, flags, message", RELATIONS, ids=[" ".join(f) for _, f, _ in RELATIONS])
def test_rules_between_flags_are_checked_before_anything_is_made(verb, flags, message, empty_cwd, capsys):
    err = assert_one_line_error(main, _argv(verb, flags), capsys)
    assert message in err and flags[0] in err
    assert _nothing_made(empty_cwd)


def test_export_never_writes_into_a_folder_it_did_not_create(tiny_run, tmp_path, capsys):
    assert_output_folder_guarded(
        main, ["export", "--ckpt", tiny_run["run_dir"]], [tiny_run["run_dir"]], tmp_path, capsys
    )


def test_export_replaces_its_own_earlier_export_only_with_overwrite(tiny_run, tmp_path, capsys):
    out = tmp_path / "export"
    args = ["export", "--ckpt", tiny_run["run_dir"], "--out", str(out)]
    main(args)
    (out / "card.json").unlink()  # the new export must bring everything back, not merge into the old folder
    assert "add --overwrite" in assert_one_line_error(main, args, capsys)
    main([*args, "--overwrite"])
    expected = [
        *(".written-by-capstones", "README.md", "card.json", "config.json", "model.onnx", "model.safetensors"),
        "train_config.json",
    ]
    assert sorted(p.name for p in out.iterdir()) == expected
    assert not list(tmp_path.glob(".export.*"))  # no staging folder left


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text(encoding="utf-8")), **changes}), encoding="utf-8")


def _edit_model(path: Path, **changes) -> None:
    card = json.loads(path.read_text(encoding="utf-8"))
    _edit_json(path, model={**card["model"], **changes})


# how a detector run folder gets damaged -> the verbs that read that file, and the file the error must name
DETECTOR_DAMAGE = {
    "truncated-weights": (lambda run: _truncate(run / "model.safetensors"), "model.safetensors"),
    "card-not-json": (
        lambda run: (run / "card.json").write_text('{"classes": ["circle",', encoding="utf-8"),
        "card.json",
    ),
    "card-not-an-object": (lambda run: (run / "card.json").write_text('["circle"]', encoding="utf-8"), "card.json"),
    "card-missing-classes": (lambda run: _edit_json(run / "card.json", classes=[]), "card.json"),
    "card-unknown-arch": (lambda run: _edit_json(run / "card.json", arch="yolo"), "card.json"),
    "card-two-stages": (lambda run: _edit_model(run / "card.json", widths=[16, 16]), "card.json"),
    "weights-of-another-architecture": (
        lambda run: _edit_model(run / "card.json", fpn_width=8),
        "model.safetensors",
    ),
}
DETECTOR_CASES = [(verb, damage) for damage in DETECTOR_DAMAGE for verb in ("eval", "export", "demo")]
DETECTOR_CASES += [("eval", "config-not-json"), ("eval", "config-bad-value")]  # eval rebuilds the test split
CONFIG_DAMAGE = {
    "config-not-json": (lambda run: (run / "config.json").write_text("{'epochs': 2", encoding="utf-8"), "config.json"),
    "config-bad-value": (lambda run: _edit_json(run / "config.json", image_size=-64), "config.json"),
}


@pytest.mark.parametrize("verb, damage", DETECTOR_CASES, ids=[f"{v}-{d}" for v, d in DETECTOR_CASES])
def test_a_damaged_or_foreign_run_is_one_line_naming_the_file(tiny_run, tmp_path, capsys, monkeypatch, verb, damage):
    monkeypatch.chdir(tmp_path)
    corrupt, named = {**DETECTOR_DAMAGE, **CONFIG_DAMAGE}[damage]
    assert_damaged_run_refused(main, verb, tiny_run["run_dir"], corrupt, named, tmp_path, capsys)


UNET_DAMAGE = {
    "truncated-weights": (lambda run: _truncate(run / "model.safetensors"), "model.safetensors"),
    "card-not-json": (lambda run: (run / "card.json").write_text("{", encoding="utf-8"), "card.json"),
    "card-one-level": (lambda run: _edit_json(run / "card.json", widths=[8]), "card.json"),
    "weights-of-another-architecture": (lambda run: _edit_json(run / "card.json", widths=[8, 16]), "model.safetensors"),
}


@pytest.mark.parametrize("damage", UNET_DAMAGE)
def test_the_demo_names_a_damaged_unet_run(tiny_run, tiny_unet, tmp_path, capsys, monkeypatch, damage):
    monkeypatch.chdir(tmp_path)
    unet = Path(shutil.copytree(tiny_unet["run_dir"], tmp_path / "unet"))
    corrupt, named = UNET_DAMAGE[damage]
    corrupt(unet)
    err = assert_one_line_error(main, ["demo", "--ckpt", tiny_run["run_dir"], "--unet", str(unet)], capsys)
    assert str(unet / named) in err


@pytest.mark.parametrize("verb", ["train", "segment"])
def test_resume_from_a_truncated_resume_file_is_one_line_naming_it(tiny_run, tiny_unet, tmp_path, capsys, verb):
    source, project = (tiny_run, "detector") if verb == "train" else (tiny_unet, "detector-unet")
    run = Path(shutil.copytree(source["run_dir"], tmp_path / project / "damaged"))
    _truncate(run / "resume.pt")
    shapes = json.loads((run / "config.json").read_text(encoding="utf-8"))["shapes_root"]  # the shapes are made already
    argv = [verb, "--preset", "tiny", "--resume", "--name", "damaged", "--out", str(tmp_path), "--shapes-root", shapes]
    assert str(run / "resume.pt") in assert_one_line_error(main, argv, capsys)


def test_a_garbage_onnx_file_is_an_error_naming_it(tmp_path):
    from detector.export import OnnxDetector

    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07garbage, not a protobuf graph" * 10)
    with pytest.raises(UserError, match="not an ONNX model") as info:
        OnnxDetector(onnx)
    assert str(onnx) in str(info.value) and "\n" not in str(info.value)
