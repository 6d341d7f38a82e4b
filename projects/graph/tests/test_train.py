"""Training end to end: files, the seeds' mean ± std, eval reproduces the saved model's accuracy, kill + resume."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dlshared.checkpoint import load_resume_state
from dlshared.processes import kill_when
from graph.cli import main
from graph.evaluate import mean_std
from graph.train import train

from .conftest import tiny_config


def test_a_run_writes_weights_pictures_and_per_seed_results(node_run):
    run = Path(node_run["run_dir"])
    for name in (
        "config.json",
        "card.json",
        "model.safetensors",
        "metrics.json",
        "resume.pt",
        "curves.png",
        "embeddings.png",
    ):
        assert (run / name).is_file(), name
    seeds = node_run["per_seed"]
    assert [s["seed"] for s in seeds] == [0, 1] and node_run["seeds"] == 2
    accuracies = [s["test_accuracy"] for s in seeds]
    assert (
        node_run["test_accuracy"] == mean_std(accuracies)["mean"] and node_run["model_test_accuracy"] == accuracies[0]
    )
    # 30 epochs of GCN already classify most of Cora (chance: 0.32 by always answering the largest class)
    assert node_run["test_accuracy"] > 0.6
    assert json.loads((run / "card.json").read_text(encoding="utf-8"))["classes"][3] == "Neural_Networks"


def test_mean_std_is_the_sample_standard_deviation():
    assert mean_std([0.8, 0.82, 0.84]) == {"mean": 0.82, "std": 0.02, "n": 3}


def test_eval_reproduces_the_saved_models_test_accuracy(node_run, capsys):
    main(["eval", "--ckpt", node_run["run_dir"]])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["test_accuracy"] == node_run["model_test_accuracy"]
    assert printed["val"]["accuracy"] == node_run["per_seed"][0]["val_accuracy"]


def test_early_stopping_keeps_the_best_validation_epoch(tmp_path):
    metrics = train(tiny_config(tmp_path, name="patient", epochs=60, patience=5, seeds=1))
    seed = metrics["per_seed"][0]
    assert seed["epochs"] == seed["best_epoch"] + 5 < 60  # stopped 5 epochs after its best
    assert metrics["val_accuracy"] == seed["val_accuracy"]


def test_resume_after_the_first_seed_ends_like_an_uninterrupted_run(node_run, tmp_path):
    train(tiny_config(tmp_path, name="halves", seeds=1))  # as if killed after its first seed's checkpoint
    resumed = train(tiny_config(tmp_path, name="halves", resume=True))
    assert resumed["per_seed"] == node_run["per_seed"]
    whole = load_file(Path(node_run["run_dir"]) / "model.safetensors")
    for name, tensor in load_file(tmp_path / "graph" / "halves" / "model.safetensors").items():
        assert torch.equal(tensor, whole[name]), name


@pytest.mark.slow  # a real process, killed: ~20 s, mostly importing torch twice
def test_kill_and_resume_from_the_command_line_equals_an_uninterrupted_run(tmp_path):
    flags = ["--preset", "tiny", "--seeds", "4", "--epochs", "150", "--device", "cpu", "--out", str(tmp_path)]
    command = [sys.executable, "-m", "graph.cli", "train", *flags, "--name", "killed"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    resume_file = tmp_path / "graph" / "killed" / "resume.pt"
    kill_when(proc, lambda: resume_file.exists() and len(load_resume_state(resume_file)["results"]) >= 1)
    done = len(load_resume_state(resume_file)["results"])
    assert 1 <= done < 4 and not (resume_file.parent / "metrics.json").exists(), "finished before the kill"

    main(["train", "--resume", "--name", "killed", "--out", str(tmp_path)])
    straight = train(dataclasses.replace(tiny_config(tmp_path, name="straight", seeds=4, epochs=150, device="cpu")))
    resumed = json.loads((resume_file.parent / "metrics.json").read_text(encoding="utf-8"))
    assert resumed["per_seed"] == straight["per_seed"]


def test_the_hand_written_layers_train_seed_for_seed_like_gcnconv(tmp_path):
    # the same Glorot draws, the same propagation to rounding: the same best epochs and accuracies per seed
    runs = {kind: train(tiny_config(tmp_path, name=kind, model=kind)) for kind in ("gcn", "gcn-hand", "gcn-mp")}
    assert runs["gcn-hand"]["per_seed"] == runs["gcn"]["per_seed"] == runs["gcn-mp"]["per_seed"]
