"""Errors a user can cause end in one line on stderr and exit code 2, with what to do about them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tuner.cli import main
from tuner.config import TrainConfig

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--data", "/no/such/file.jsonl"], "no such file"),
        (["train", "--preset", "huge"], "unknown preset"),
        (["train", "--preset", "tiny", "--sft-steps", "0"], "at least 1"),
        (["train", "--preset", "tiny", "--beta", "0"], "--beta 0.0: must be greater than 0"),
        (["train", "--preset", "tiny", "--heldout-fraction", "1.5"], "heldout-fraction"),
        (["train", "--preset", "tiny", "--stage", "pretrain", "--base", "x"], "already trained"),
        (["train", "--preset", "tiny", "--base", "/no/such/model"], "cannot load base model"),
        (["train", "--preset", "tiny", "--stage", "sft", "--name", "fresh"], "no base model"),
        (["train", "--preset", "tiny", "--resume", "--name", "nothing"], "--resume"),
        (["train", "--preset", "tiny", "--name", "../elsewhere"], "run name"),
        (["train", "--preset", "tiny", "--resume", "--overwrite", "--name", "x"], "give one of them"),
        (["eval", "--ckpt", "/no/such/run"], "not a tuner run folder"),
        (["export", "--ckpt", "/no/such/run"], "not a tuner run folder"),
        (["demo", "--ckpt", "/no/such/run"], "not a tuner run folder"),
    ],
)
def test_user_errors_end_in_one_line_and_exit_code_2(argv, message, capsys, tmp_path):
    if argv[0] == "train":
        argv = [*argv, "--out", str(tmp_path)]
    elif argv[0] == "eval":
        argv = [*argv, "--runs", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_no_run_yet_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--runs", str(tmp_path)])
    assert "no finished tuner run" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"prompt": "a", "chosen": "b"}'], "missing key 'rejected'"),
        (['{"prompt": "a", "chosen": "b", "rejected": "c"}'], "need at least 2"),
        (["not json"], "invalid JSON"),
        (['{"messages": [{"role": "user", "content": "hi"}]}'], "must end with an assistant message"),
    ],
)
def test_bad_data_files(tiny_run, tmp_path, capsys, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    base = f"{tiny_run['run_dir']}/base"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--preset", "tiny", "--data", str(path), "--base", base, "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_bad_lora_settings_and_qlora_without_a_gpu(tiny_run, tmp_path, capsys):
    import torch

    base = f"{tiny_run['run_dir']}/base"
    common = ["train", "--preset", "tiny", "--base", base, "--out", str(tmp_path)]
    with pytest.raises(SystemExit):
        main([*common, "--target-modules", "c_attn"])
    assert "not in this model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*common, "--lora-r", "0"])
    assert "--lora-r 0: must be at least 1" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            main([*common, "--quantize", "4bit"])
        assert "needs a CUDA GPU" in capsys.readouterr().err


def test_help_lists_every_verb_and_field(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(verb in out for verb in ("train", "eval", "export", "bench", "demo"))
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    flags = [f"--{field.name.replace('_', '-')}" for field in dataclasses.fields(TrainConfig)]
    assert [flag for flag in flags if flag not in out] == []
    assert "tiny" in out and "full" in out  # the presets


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--target-modules", "c_attn"], "not in this model"), (["--lora-r", "0"], "--lora-r 0: must be at least 1")],
)
def test_bad_lora_settings_for_the_embedded_base_fail_before_pretraining(tmp_path, capsys, flags, message):
    """Found after pretraining they would cost minutes, and the unfinished run folder is deleted with the error."""
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--preset", "tiny", "--out", str(tmp_path), *flags])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not Path(tmp_path, "tuner").exists()  # no run folder was made: nothing trained


def test_a_stage_of_an_existing_run_needs_resume(tiny_run, capsys):
    run = Path(tiny_run["run_dir"])
    before = sorted((path.name, path.stat().st_mtime_ns) for path in run.iterdir())
    argv = ["train", "--preset", "tiny", "--stage", "dpo", "--name", run.name, "--out", str(run.parents[1])]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "already holds a run" in err and "--resume" in err, err
    assert sorted((path.name, path.stat().st_mtime_ns) for path in run.iterdir()) == before  # left as it was


def test_several_processes_are_refused_before_anything_is_made(tmp_path, capsys, monkeypatch):
    """Under torchrun every process would pretrain, write the same stage folders and evaluate: one line instead."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--preset", "tiny", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and "trains in one process" in err, err
    assert not Path(tmp_path, "tuner").exists()


def test_bench_times_both_loops_then_profiles_sft_steps(tmp_path, capsys):
    main(["bench", "--preset", "tiny", "--steps", "2", "--profile-out", str(tmp_path / "profile")])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["pretrain_tokens_per_s"] > 0 and result["sft_samples_per_s"] > 0
    assert result["lora_trainable_params"] == 2048  # r=4 on q, k, v, o of 2 layers of width 32: 2*4*(4+4)*32
    trace = json.loads((tmp_path / "profile" / "trace.json").read_text(encoding="utf-8"))
    steps = {e["name"] for e in trace["traceEvents"] if e.get("name", "").startswith("ProfilerStep#")}
    assert steps == {"ProfilerStep#2", "ProfilerStep#3", "ProfilerStep#4"}  # the trainer's optimizer advanced it
    assert "aten::mm" in (tmp_path / "profile" / "top_ops.txt").read_text(encoding="utf-8")
