"""Bad input from a user: every flag's bad values, folders that must not be written into, damaged or foreign
files, in one line each."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from classifier.cli import main
from classifier.config import BenchArgs, DemoArgs, EvalArgs, ExportArgs, TrainConfig
from dlshared.testing import (
    assert_damaged_run_refused,
    assert_one_line_error,
    assert_output_folder_guarded,
    bad_flag_cases,
)

VERBS = {"train": TrainConfig, "eval": EvalArgs, "export": ExportArgs, "bench": BenchArgs, "demo": DemoArgs}
CASES = [(verb, flag, value) for verb, config in VERBS.items() for flag, value in bad_flag_cases(config)]


@pytest.mark.parametrize("verb, flag, value", CASES, ids=[f"{v}{f}={x}" for v, f, x in CASES])
def test_every_bad_flag_value_is_one_line_and_creates_nothing(verb, flag, value, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may appear here, ./runs included
    argv = [verb, flag, value]
    err = assert_one_line_error(main, [*argv, "--preset", "tiny"] if verb == "train" else argv, capsys)
    assert flag in err
    assert list(tmp_path.iterdir()) == []


RELATIONS = [
    (["--widths", "16", "32", "64"], "one entry per stage"),  # the tiny preset has two blocks entries
    (["--val-fraction", "0.5", "--test-fraction", "0.5"], "leave no training data"),
]


@pytest.mark.parametrize("flags, message", RELATIONS, ids=[" ".join(f) for f, _ in RELATIONS])
def test_rules_between_flags_are_checked_before_anything_is_made(flags, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = assert_one_line_error(main, ["train", "--preset", "tiny", *flags], capsys)
    assert message in err and flags[0] in err
    assert list(tmp_path.iterdir()) == []


def test_export_never_writes_into_a_folder_it_did_not_create(tiny_run, tmp_path, capsys):
    assert_output_folder_guarded(
        main, ["export", "--ckpt", tiny_run["run_dir"]], [tiny_run["run_dir"]], tmp_path, capsys
    )


def test_export_replaces_its_own_earlier_export_only_with_overwrite(tiny_run, tmp_path, capsys):
    out = tmp_path / "export"
    args = ["export", "--ckpt", tiny_run["run_dir"], "--out", str(out), "--format", "onnx"]
    main(args)
    assert (out / "model.onnx").is_file() and not list(tmp_path.glob(".export.*"))  # no staging folder left
    assert "add --overwrite" in assert_one_line_error(main, args, capsys)
    main([*args, "--overwrite"])
    assert (out / "model.onnx").is_file() and not list(tmp_path.glob(".export.*"))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text(encoding="utf-8")), **changes}), encoding="utf-8")


# how a run folder gets damaged -> the file the one-line error must name
CORRUPTIONS = {
    "truncated-weights": (lambda run: _truncate(run / "model.safetensors"), "model.safetensors"),
    "config-not-json": (
        lambda run: (run / "config.json").write_text("{'widths': (16,", encoding="utf-8"),
        "config.json",
    ),
    "config-not-an-object": (lambda run: (run / "config.json").write_text("[16, 32]", encoding="utf-8"), "config.json"),
    "config-bad-value": (lambda run: _edit_json(run / "config.json", epochs=0), "config.json"),
    # a config.json without its sizes describes the default net, not the one the weights are for
    "config-missing-fields": (
        lambda run: (run / "config.json").write_text(json.dumps({"backbone": "resnet-small"}), encoding="utf-8"),
        "model.safetensors",
    ),
    "card-missing-classes": (lambda run: _edit_json(run / "card.json", classes=None), "card.json"),
    "weights-of-another-architecture": (
        lambda run: _edit_json(run / "config.json", widths=[8, 16]),
        "model.safetensors",
    ),
}
LOADING_VERBS = ["eval", "export", "bench", "demo"]


@pytest.mark.parametrize("verb", LOADING_VERBS)
@pytest.mark.parametrize("damage", CORRUPTIONS)
def test_a_damaged_or_foreign_run_is_one_line_naming_the_file(tiny_run, tmp_path, capsys, verb, damage):
    corrupt, named = CORRUPTIONS[damage]
    assert_damaged_run_refused(main, verb, tiny_run["run_dir"], corrupt, named, tmp_path, capsys)


@pytest.mark.parametrize("verb", ["eval", "demo"])
def test_a_garbage_onnx_file_is_one_line_naming_it(tiny_run, tmp_path, capsys, verb):
    # an export folder, but its model.onnx is not a model
    shutil.copyfile(Path(tiny_run["run_dir"]) / "config.json", tmp_path / "train_config.json")
    shutil.copyfile(Path(tiny_run["run_dir"]) / "card.json", tmp_path / "card.json")
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07garbage, not a protobuf graph" * 10)
    err = assert_one_line_error(main, [verb, "--ckpt", str(onnx)], capsys)
    assert str(onnx) in err and "ONNX" in err


def test_resume_from_a_truncated_resume_file_is_one_line_naming_it(tiny_run, tmp_path, capsys):
    run = Path(shutil.copytree(tiny_run["run_dir"], tmp_path / "classifier" / "tiny"))
    _truncate(run / "resume.pt")
    err = assert_one_line_error(main, ["train", "--resume", "--name", "tiny", "--out", str(tmp_path)], capsys)
    assert str(run / "resume.pt") in err
