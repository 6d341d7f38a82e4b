"""Two-process DDP on CPU (gloo): the tiny preset trains, and kill -9 of the job then --resume ends with the same
weights and history as the run that was never interrupted. Every rank gets its own RNG state back
(dlshared.training), so neither rank's noise repeats the other's or the killed run's."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from diffusion.artifacts import load_pipeline
from diffusion.train import train
from dlshared.checkpoint import load_resume_state
from dlshared.processes import kill_when, run_distributed, torchrun

from .conftest import tiny_config

STEPS, EVERY = 40, 2  # 38 steps after the first checkpoint: time to kill the job before it ends, under load too


@pytest.fixture(scope="module")
def ddp_root(tmp_path_factory):
    return tmp_path_factory.mktemp("ddp")


@pytest.fixture(scope="module")
def uninterrupted(ddp_root) -> list[dict]:
    """Both ranks' results of a 2-process run of STEPS steps with a checkpoint every EVERY."""
    cfg = tiny_config(ddp_root, name="whole", device="cpu", steps=STEPS, checkpoint_every=EVERY, eval_samples=0)
    return run_distributed(train, cfg, nprocs=2)


def test_tiny_preset_trains_under_two_process_ddp(uninterrupted, ddp_root):
    rank0, rank1 = uninterrupted
    assert rank0["processes"] == rank1["processes"] == 2 and rank0["steps"] == STEPS
    assert rank0["history"] == rank1["history"]  # the logged loss is the mean over both ranks
    assert (ddp_root / "diffusion/whole/pipeline/model_index.json").is_file()


def weights(run_dir) -> dict[str, torch.Tensor]:
    """The EMA weights a run publishes (its pipeline) and the raw ones it resumes from (resume.pt)."""
    ema = load_pipeline(run_dir).unet.state_dict()
    raw = load_resume_state(run_dir / "resume.pt")["model"]
    return {**{f"ema {k}": v for k, v in ema.items()}, **{f"raw {k}": v for k, v in raw.items()}}


def test_a_killed_ddp_run_resumes_to_the_uninterrupted_result(uninterrupted, ddp_root):
    resume_file = ddp_root / "diffusion" / "split" / "resume.pt"
    train_args = f"--preset tiny --device cpu --steps {STEPS} --checkpoint-every {EVERY} --eval-samples 0"
    job = torchrun("diffusion", ["train", *train_args.split(), "--out", str(ddp_root), "--name", "split"])
    # kill -9 of torchrun and both workers at once, as soon as resume.pt holds a step >= EVERY
    kill_when(job, lambda: resume_file.exists() and load_resume_state(resume_file)["step"] >= EVERY)
    killed_at = load_resume_state(resume_file)["step"]
    assert EVERY <= killed_at < STEPS and not (resume_file.parent / "metrics.json").exists(), killed_at
    (resume_file.parent / ".pipeline.killed.partial").mkdir()  # what a save killed mid-way leaves behind

    cfg = tiny_config(ddp_root, name="split", resume=True, device="cpu", steps=STEPS, checkpoint_every=EVERY)
    resumed, _ = run_distributed(train, dataclasses.replace(cfg, eval_samples=0))

    assert resumed["steps"] == STEPS and resumed["processes"] == 2
    assert resumed["history"] == uninterrupted[0]["history"]  # every logged loss, before the kill and after it
    split, whole = weights(ddp_root / "diffusion" / "split"), weights(ddp_root / "diffusion" / "whole")
    assert split.keys() == whole.keys()
    for key in split:
        torch.testing.assert_close(split[key], whole[key], atol=1e-6, rtol=0, msg=key)
    assert not list(resume_file.parent.glob(".pipeline.*"))  # the resumed run cleared the leftovers
