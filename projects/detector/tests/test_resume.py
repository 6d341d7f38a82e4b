"""`train/segment --resume`: the run's own config.json, only the flags typed on top; and kill + resume under
2-process DDP ends like an uninterrupted 2-process run (history, test metrics, weights), for both verbs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from detector.cli import main
from dlshared.checkpoint import load_resume_state
from dlshared.processes import kill_when, torchrun
from dlshared.testing import assert_one_line_error


@pytest.fixture(params=["train", "segment"])
def copied_run(request, tiny_run, tiny_unet, tmp_path) -> tuple[str, Path, dict]:
    """(verb, a copy of the session's finished tiny run of that verb under tmp/PROJECT/run, its metrics)."""
    metrics, project = (tiny_run, "detector") if request.param == "train" else (tiny_unet, "detector-unet")
    return request.param, Path(shutil.copytree(metrics["run_dir"], tmp_path / project / "run")), metrics


def test_resume_continues_under_the_runs_own_config_not_the_default_preset(copied_run, tmp_path, capsys):
    verb, run, original = copied_run
    before = json.loads((run / "config.json").read_text(encoding="utf-8"))
    # no --preset: the default (quick) has other widths, more images and epochs; the run's config.json wins
    main([verb, "--resume", "--name", "run", "--out", str(tmp_path), "--device", "cpu"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["epochs"] == 2 and printed["steps"] == original["steps"]  # nothing left to train
    metric = "test_map" if verb == "train" else "test_miou"
    assert printed[metric] == original[metric]
    after = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert after == {**before, "device": "cpu", "out": str(tmp_path), "name": "run", "resume": True}


@pytest.mark.parametrize("flags", [["--widths", "8", "8", "8"], ["--lr", "0.5"], ["--preset", "quick", "--seed", "3"]])
def test_resume_refuses_flags_that_change_what_the_run_trains(copied_run, tmp_path, capsys, flags):
    verb, run, _ = copied_run
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    err = assert_one_line_error(main, [verb, "--resume", "--name", "run", "--out", str(tmp_path), *flags], capsys)
    assert flags[-2] in err and str(run) in err and "start a new run" in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


@pytest.fixture(params=["train", "segment"])
def ddp_straight(request, ddp_run, ddp_unet) -> tuple[str, list[str], dict]:
    """(verb, its flags, rank 0's metrics): an uninterrupted 2-process run made with run_distributed."""
    verb, straight = (request.param, ddp_run[0]) if request.param == "train" else (request.param, ddp_unet[0])
    config = json.loads((Path(straight["run_dir"]) / "config.json").read_text(encoding="utf-8"))
    # the same preset and epochs, on the same (already generated) shapes
    flags = ["--preset", "tiny", "--epochs", str(config["epochs"]), "--device", "cpu"]
    return verb, [*flags, "--shapes-root", config["shapes_root"]], straight


def test_kill_and_resume_under_two_process_ddp_ends_like_an_uninterrupted_run(ddp_straight, tmp_path):
    verb, flags, straight = ddp_straight
    epochs = int(flags[flags.index("--epochs") + 1])
    flags += ["--out", str(tmp_path), "--name", "killed"]
    proc = torchrun("detector", [verb, *flags])
    project = "detector" if verb == "train" else "detector-unet"
    resume_file = tmp_path / project / "killed" / "resume.pt"
    # the launcher and both ranks, mid-run: once the first epoch's checkpoint is complete
    kill_when(proc, lambda: resume_file.exists() and load_resume_state(resume_file)["epoch"] >= 1)
    assert not (resume_file.parent / "metrics.json").exists(), "the run finished before it was killed"
    assert 1 <= load_resume_state(resume_file)["epoch"] < epochs

    resumed = torchrun("detector", [verb, *flags, "--resume"])
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()[-2000:]
    metrics = json.loads((resume_file.parent / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["processes"] == 2 and metrics["steps"] == straight["steps"]
    assert metrics["history"] == straight["history"]
    assert {k: v for k, v in metrics.items() if k.startswith("test_")} == {
        k: v for k, v in straight.items() if k.startswith("test_")
    }
    weights = load_file(resume_file.parent / "model.safetensors")
    for name, tensor in load_file(Path(straight["run_dir"]) / "model.safetensors").items():
        assert torch.equal(weights[name], tensor), name
