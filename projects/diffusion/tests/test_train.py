"""train(tiny) end to end: a loadable diffusers pipeline, metrics, resume, and save/load parity of samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DModel

from diffusion.artifacts import load_pipeline
from diffusion.config import SAMPLERS
from diffusion.pipeline import ClassConditionalPipeline
from dlshared.checkpoint import load_resume_state

from .conftest import tiny_config


def test_tiny_run_writes_a_loadable_diffusers_pipeline(tiny_run):
    run = Path(tiny_run["run_dir"])
    for name in (
        "config.json",
        "card.json",
        "metrics.json",
        "resume.pt",
        "pipeline/model_index.json",
        "pipeline/unet/diffusion_pytorch_model.safetensors",
        "pipeline/scheduler/scheduler_config.json",
    ):
        assert (run / name).is_file(), name
    assert json.loads((run / "pipeline/model_index.json").read_text())["_class_name"] == "ClassConditionalPipeline"
    unet = UNet2DModel.from_pretrained(run / "pipeline", subfolder="unet")  # the ecosystem's way in
    assert unet.config.num_class_embeds == 11 and unet.config.sample_size == 16
    images = load_pipeline(run)([0, 9], 3, 2.0, torch.Generator().manual_seed(0)).images
    assert images.shape == (2, 1, 16, 16) and images.min() >= 0 and images.max() <= 1
    card = json.loads((run / "card.json").read_text())
    assert card["model"] == "diffusion" and card["classes"] == [str(d) for d in range(10)]


def test_loss_falls_and_metrics_are_judged(tiny_run):
    losses = [h["loss"] for h in tiny_run["history"]]
    assert losses[-1] < 0.7 * losses[0]
    scores = tiny_run["eval"]
    assert scores["samples"] == 20 and 0 <= scores["accuracy"] <= 1 and scores["fid"] > 0
    saved = json.loads((Path(tiny_run["run_dir"]) / "metrics.json").read_text())
    assert saved["eval"] == scores and saved["steps"] == 30


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_save_and_load_give_identical_samples(tiny_run, tmp_path, sampler):
    pipe = load_pipeline(Path(tiny_run["run_dir"]))
    pipe.save_pretrained(tmp_path / "copy")
    again = ClassConditionalPipeline.from_pretrained(tmp_path / "copy")
    again.set_progress_bar_config(disable=True)
    a = pipe([1, 2, 3], 4, 2.0, torch.Generator().manual_seed(7), sampler).images
    b = again([1, 2, 3], 4, 2.0, torch.Generator().manual_seed(7), sampler).images
    assert type(again.scheduler) is type(pipe.scheduler)
    assert torch.equal(a, b)
    c = again([1, 2, 3], 4, 2.0, torch.Generator().manual_seed(8), sampler).images
    assert not torch.equal(a, c)  # the seed matters: the check above could not pass by accident


def test_saved_pipeline_holds_the_ema_weights_not_the_raw_ones(tiny_run):
    run = Path(tiny_run["run_dir"])
    saved = load_pipeline(run).unet.state_dict()
    state = load_resume_state(run / "resume.pt")
    raw = state["model"]
    shadow = state["ema"]["shadow_params"]
    params = [k for k, _ in load_pipeline(run).unet.named_parameters()]
    assert torch.allclose(saved[params[0]], shadow[0])
    assert any(not torch.allclose(saved[k], raw[k]) for k in params)


def test_resume_after_a_kill_matches_an_uninterrupted_run(runs_root, monkeypatch):
    import diffusion.train as train_module

    whole = train_module.train(tiny_config(runs_root, name="whole", steps=20, eval_samples=0))
    real_loss, calls = train_module.diffusion_loss, {"n": 0}

    def dies_at_step_14(prediction, target):
        calls["n"] += 1
        if calls["n"] == 14:
            raise KeyboardInterrupt  # a kill between the checkpoints of steps 10 and 20
        return real_loss(prediction, target)

    monkeypatch.setattr(train_module, "diffusion_loss", dies_at_step_14)
    with pytest.raises(KeyboardInterrupt):
        train_module.train(tiny_config(runs_root, name="split", steps=20, eval_samples=0))
    monkeypatch.setattr(train_module, "diffusion_loss", real_loss)
    assert load_resume_state(runs_root / "diffusion/split/resume.pt")["step"] == 10
    resumed = train_module.train(tiny_config(runs_root, name="split", steps=20, eval_samples=0, resume=True))
    assert resumed["steps"] == 20 and resumed["history"][0]["step"] == 5  # the history before the kill is kept
    a = load_pipeline(Path(whole["run_dir"])).unet.state_dict()
    b = load_pipeline(Path(resumed["run_dir"])).unet.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)


def test_resume_without_a_checkpoint_is_a_clear_error(runs_root):
    from diffusion.train import train
    from dlshared.cli import UserError

    with pytest.raises(UserError, match="never-trained has no pipeline/model_index.json to resume from"):
        train(tiny_config(runs_root, name="never-trained", resume=True))


def test_resume_without_a_name_never_picks_a_baseline_run(tmp_path):
    """VAE, GAN and diffusion runs share runs/diffusion/ and the name resume.pt: each --resume looks for a file
    only its own kind writes."""
    import dataclasses

    from diffusion.autoencoder import train_vae
    from diffusion.baselines_config import VAE_PRESETS
    from diffusion.train import train
    from dlshared.cli import UserError
    from dlshared.testing import reset_accelerate

    train_vae(dataclasses.replace(VAE_PRESETS["tiny"], out=tmp_path, steps=2, checkpoint_every=1, eval_samples=0))
    reset_accelerate()
    with pytest.raises(UserError, match="no run with a pipeline/model_index.json"):
        train(tiny_config(tmp_path, resume=True))


def test_a_finished_run_is_not_trained_over(tiny_run, runs_root):
    from diffusion.train import train
    from dlshared.cli import UserError

    with pytest.raises(UserError, match="--overwrite"):
        train(tiny_config(runs_root, name="tiny"))
    assert (Path(tiny_run["run_dir"]) / "metrics.json").is_file()  # untouched


def test_epsilon_prediction_trains_too(runs_root, tiny_run):
    from diffusion.train import train

    default = load_pipeline(Path(tiny_run["run_dir"])).scheduler.config.prediction_type
    assert default == "v_prediction"
    metrics = train(tiny_config(runs_root, name="eps", prediction_type="epsilon", eval_samples=0))
    assert metrics["history"][-1]["loss"] < metrics["history"][0]["loss"]
    assert load_pipeline(Path(metrics["run_dir"])).scheduler.config.prediction_type == "epsilon"


def test_tiny_preset_trains_under_two_process_ddp(tmp_path):
    from diffusion.train import train
    from dlshared.testing import run_distributed

    cfg = tiny_config(tmp_path, name="ddp", device="cpu", steps=10, eval_samples=0)
    rank0, rank1 = run_distributed(train, cfg, nprocs=2)
    assert rank0["processes"] == rank1["processes"] == 2
    assert rank0["history"] == rank1["history"]  # the logged loss is the mean over both ranks
    assert (tmp_path / "diffusion/ddp/pipeline/model_index.json").is_file()
