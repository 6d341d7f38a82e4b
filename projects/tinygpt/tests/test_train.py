"""Training end to end: files written, loss falls, resume continues exactly, DDP over 2 processes, bad input."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dlshared.checkpoint import load_resume_state
from dlshared.processes import kill_when, run_distributed, torchrun
from dlshared.testing import assert_one_line_error
from tinygpt.artifacts import load_model
from tinygpt.cli import main
from tinygpt.config import PRESETS
from tinygpt.data import SHAKESPEARE_SHA256, shakespeare_path
from tinygpt.train import lr_at, train

from .conftest import tiny_config


def test_tiny_run_writes_a_loadable_model_and_the_loss_falls(tiny_run):
    run_dir = Path(tiny_run["run_dir"])
    for name in (
        "config.json",
        "model_config.json",
        "tokenizer.json",
        "model.safetensors",
        "resume.pt",
        "metrics.json",
    ):
        assert (run_dir / name).is_file(), name
    first, last = tiny_run["history"][0], tiny_run["history"][-1]
    assert last["iter"] == 40 and last["val_loss_estimate"] < first["val_loss_estimate"]
    assert tiny_run["val_loss"] < math.log(tiny_run["vocab_size"]) - 0.5  # well below a uniform guess
    assert tiny_run["tokens_per_s"] > 0 and tiny_run["sample"]
    loaded = load_model(run_dir, "cpu")
    assert loaded.tokenizer.vocab_size == loaded.model.cfg.vocab_size == tiny_run["vocab_size"]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set(EventAccumulator(str(run_dir)).Reload().Tags()["scalars"])
    expected = {"train/loss", "train/lr", "train/tokens_per_s", "train/mfu", "loss/val_loss_estimate", "loss/val_loss"}
    assert expected <= tags


def test_eval_reproduces_the_saved_validation_loss(tiny_run, capsys):
    # the full pass over every validation window: train's final val_loss, to the last printed digit
    main(["eval", "--ckpt", tiny_run["run_dir"]])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["loss"] == tiny_run["val_loss"] and printed["split"] == "validation split"
    assert printed["perplexity"] == pytest.approx(math.exp(printed["loss"]), rel=1e-3)
    # the same function on train's eval_iters x batch_size windows: its last periodic estimate
    windows = PRESETS["tiny"].eval_iters * PRESETS["tiny"].batch_size
    main(["eval", "--ckpt", tiny_run["run_dir"], "--max-windows", str(windows)])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["loss"] == tiny_run["history"][-1]["val_loss_estimate"] != tiny_run["val_loss"]


def test_resume_continues_exactly_where_the_run_stopped(tmp_path, tiny_run):
    cfg = tiny_config(tmp_path, name="halves", sample_tokens=0)
    train(dataclasses.replace(cfg, max_iters=20, lr_decay_iters=40))  # stops at the step-20 checkpoint
    assert load_resume_state(tmp_path / "tinygpt" / "halves" / "resume.pt")["iter"] == 20
    resumed = train(dataclasses.replace(cfg, resume=True))
    assert [h["iter"] for h in resumed["history"]] == [20, 40]
    # same batches, same dropout-free steps, same optimizer state: the same weights as the uninterrupted run
    whole = load_file(str(Path(tiny_run["run_dir"]) / "model.safetensors"))
    halves = load_file(str(tmp_path / "tinygpt" / "halves" / "model.safetensors"))
    for name, tensor in whole.items():
        torch.testing.assert_close(halves[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    assert resumed["val_loss"] == tiny_run["val_loss"]


def test_resume_from_the_command_line_uses_the_runs_own_config(tiny_run, tmp_path, capsys):
    # the run was trained with --preset tiny; resumed without it (the default preset is quick, another size), its
    # config.json gives the architecture and everything not typed; typed run-time flags (--max-iters) apply
    run = Path(shutil.copytree(tiny_run["run_dir"], tmp_path / "tinygpt" / "copy"))
    main(["train", "--out", str(tmp_path), "--name", "copy", "--resume", "--max-iters", "50", "--n-layer", "2"])
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["iters"] == 50 and metrics["parameters"] == tiny_run["parameters"]
    saved = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert saved["max_iters"] == 50 and saved["n_embd"] == PRESETS["tiny"].n_embd != PRESETS["quick"].n_embd
    assert saved["eval_interval"] == PRESETS["tiny"].eval_interval  # not typed: the run's own


def test_resume_refuses_another_architecture_in_one_line_and_leaves_the_run_alone(tiny_run, tmp_path, capsys):
    run = Path(shutil.copytree(tiny_run["run_dir"], tmp_path / "tinygpt" / "copy"))
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    argv = ["train", "--out", str(tmp_path), "--name", "copy", "--resume", "--n-layer", "3", "--arch", "gpt2"]
    err = assert_one_line_error(main, argv, capsys)
    # the first changed field (in name order) is named with the value the run was trained with
    assert "--arch gpt2" in err and "trained with llama" in err and "--resume continues a run as it was" in err
    # the text is the run's own too (its tokenizer and its split were made from it)
    err = assert_one_line_error(main, [*argv[:6], "--max-chars", "1000"], capsys)
    assert err.startswith("tinygpt train: error: --max-chars 1000:")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


@pytest.mark.slow  # a torchrun job killed mid-run: ~30 s, mostly processes importing torch
def test_two_process_ddp_killed_and_resumed_ends_exactly_like_an_uninterrupted_run(tmp_path):
    # dropout on: each rank draws its own masks, so the resumed run matches only if every rank gets its own RNG
    # state back, and its own position in its own stream of windows (the sampler state, saved per rank)
    cfg = tiny_config(tmp_path, device="cpu", max_iters=40, eval_interval=10, dropout=0.1, sample_tokens=0)
    whole0, whole1 = run_distributed(train, dataclasses.replace(cfg, name="whole"))
    # the same run under torchrun, SIGKILLed (launcher and both ranks) once a checkpoint before the end exists
    flags = ["--max-iters", "40", "--eval-interval", "10", "--dropout", "0.1", "--sample-tokens", "0"]
    args = ["train", "--preset", "tiny", "--device", "cpu", "--out", str(tmp_path), "--name", "halves", *flags]
    resume_file = tmp_path / "tinygpt" / "halves" / "resume.pt"
    kill_when(torchrun("tinygpt", args), lambda: resume_file.exists() and load_resume_state(resume_file)["iter"] >= 10)
    assert 10 <= load_resume_state(resume_file)["iter"] < 40, "the run finished before it was killed"
    resumed0, resumed1 = run_distributed(train, dataclasses.replace(cfg, name="halves", resume=True))
    assert whole0["processes"] == whole1["processes"] == 2
    assert whole0["val_loss"] == whole1["val_loss"]  # DDP keeps the replicas identical
    first, last = whole0["history"][0], whole0["history"][-1]
    assert last["val_loss_estimate"] < first["val_loss_estimate"]  # the loss falls under DDP
    assert resumed0["history"] == resumed1["history"] == whole0["history"]
    assert resumed0["val_loss"] == whole0["val_loss"]
    a = load_file(str(tmp_path / "tinygpt" / "whole" / "model.safetensors"))
    b = load_file(str(tmp_path / "tinygpt" / "halves" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6, msg=name)


def test_a_used_run_name_is_refused_without_resume_or_overwrite(tmp_path, capsys):
    (tmp_path / "tinygpt" / "taken").mkdir(parents=True)
    (tmp_path / "tinygpt" / "taken" / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--preset", "tiny", "--out", str(tmp_path), "--name", "taken"])
    assert exit_info.value.code == 2
    assert "--overwrite" in capsys.readouterr().err


def test_learning_rate_schedule_warms_up_then_decays_to_min_lr():
    cfg = dataclasses.replace(PRESETS["shakespeare-char-cpu"])
    lrs = [lr_at(cfg, it) for it in range(cfg.max_iters + 1)]
    assert lrs[0] < lrs[50] < lrs[cfg.warmup_iters] == pytest.approx(cfg.lr, rel=0.02)
    assert max(lrs) <= cfg.lr and lrs[-1] == pytest.approx(cfg.min_lr)
    assert all(a >= b for a, b in zip(lrs[cfg.warmup_iters :], lrs[cfg.warmup_iters + 1 :], strict=False))


def test_training_on_a_users_text_file(tmp_path, capsys):
    text = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(400))
    (tmp_path / "corpus.txt").write_text(text, encoding="utf-8")
    corpus = ["--data", str(tmp_path / "corpus.txt"), "--tokenizer", "bpe", "--vocab-size", "300"]
    main(["train", "--preset", "tiny", *corpus, "--out", str(tmp_path), "--name", "user"])
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["tokenizer"] == "bpe" and metrics["data"].endswith("corpus.txt")
    assert metrics["val_loss"] < math.log(metrics["vocab_size"])


def test_gradient_accumulation_matches_one_large_batch(tmp_path):
    # 2 micro-batches of 4 draw the same windows as one batch of 8, and each loss is halved before backward: the
    # summed gradient is the large batch's mean gradient, so training follows the same path. A step that used
    # only the last micro-batch, or zeroed gradients between micro-batches, would drift apart within 10 steps.
    common = dict(max_iters=10, eval_interval=10, sample_tokens=0)
    train(tiny_config(tmp_path, name="big", batch_size=8, **common))
    train(tiny_config(tmp_path, name="accumulated", batch_size=4, grad_accum=2, **common))
    a = load_file(str(tmp_path / "tinygpt" / "big" / "model.safetensors"))
    b = load_file(str(tmp_path / "tinygpt" / "accumulated" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)


def test_tiny_shakespeare_ships_with_the_package_unchanged():
    # nanoGPT's shakespeare_char recipe reproduces from a clone, offline: char-rnn's file, byte for byte
    path = shakespeare_path()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHAKESPEARE_SHA256
    assert (path.parent / "LICENSE").read_text(encoding="utf-8").count("MIT") >= 1
