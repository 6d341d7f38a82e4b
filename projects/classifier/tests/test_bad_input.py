"""Bad input from a user: every flag's bad values, folders that must not be written into, in one line each."""

from __future__ import annotations

import pytest

from classifier.cli import main
from classifier.config import BenchArgs, DemoArgs, EvalArgs, ExportArgs, TrainConfig
from dlshared.testing import assert_one_line_error, bad_flag_cases

VERBS = {"train": TrainConfig, "eval": EvalArgs, "export": ExportArgs, "bench": BenchArgs, "demo": DemoArgs}
CASES = [(verb, flag, value) for verb, config in VERBS.items() for flag, value in bad_flag_cases(config)]


@pytest.mark.parametrize("verb, flag, value", CASES, ids=[f"{v}{f}={x}" for v, f, x in CASES])
def test_every_bad_flag_value_is_one_line_and_creates_nothing(verb, flag, value, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may appear here, ./runs included
    argv = [verb, flag, value]
    err = assert_one_line_error(main, [*argv, "--preset", "tiny"] if verb == "train" else argv, capsys)
    assert flag in err
    assert list(tmp_path.iterdir()) == []


def test_export_never_writes_into_a_folder_it_did_not_create(tiny_run, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for out, overwrite, message in [
        (mine, [], "is not empty"),
        (mine, ["--overwrite"], "was not written by this tool"),
        (tiny_run["run_dir"], [], "which is being read"),
    ]:
        err = assert_one_line_error(
            main, ["export", "--ckpt", tiny_run["run_dir"], "--out", str(out), *overwrite], capsys
        )
        assert message in err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_export_replaces_its_own_earlier_export_only_with_overwrite(tiny_run, tmp_path, capsys):
    out = tmp_path / "export"
    args = ["export", "--ckpt", tiny_run["run_dir"], "--out", str(out), "--format", "onnx"]
    main(args)
    assert (out / "model.onnx").is_file() and not list(tmp_path.glob(".export.*"))  # no staging folder left
    assert "add --overwrite" in assert_one_line_error(main, args, capsys)
    main([*args, "--overwrite"])
    assert (out / "model.onnx").is_file() and not list(tmp_path.glob(".export.*"))
