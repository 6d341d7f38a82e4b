"""train(tiny) end to end: a loadable diffusers pipeline, metrics, resume, and save/load parity of samples."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DModel

from diffusion.artifacts import load_pipeline
from diffusion.cli import COMMANDS
from diffusion.config import SAMPLERS
from diffusion.pipeline import ClassConditionalPipeline
from dlshared.checkpoint import load_resume_state
from dlshared.cli import run_cli
from dlshared.runs import RunLock

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
    assert (
        json.loads((run / "pipeline/model_index.json").read_text(encoding="utf-8"))["_class_name"]
        == "ClassConditionalPipeline"
    )
    unet = UNet2DModel.from_pretrained(run / "pipeline", subfolder="unet")  # the ecosystem's way in
    assert unet.config.num_class_embeds == 11 and unet.config.sample_size == 16
    images = load_pipeline(run)([0, 9], 3, 2.0, torch.Generator().manual_seed(0)).images
    assert images.shape == (2, 1, 16, 16) and images.min() >= 0 and images.max() <= 1
    card = json.loads((run / "card.json").read_text(encoding="utf-8"))
    assert card["model"] == "diffusion" and card["classes"] == [str(d) for d in range(10)]


def test_loss_falls_and_metrics_are_judged(tiny_run):
    losses = [h["loss"] for h in tiny_run["history"]]
    assert losses[-1] < 0.7 * losses[0]
    scores = tiny_run["eval"]
    assert scores["samples"] == 20 and 0 <= scores["accuracy"] <= 1 and scores["fid"] > 0
    saved = json.loads((Path(tiny_run["run_dir"]) / "metrics.json").read_text(encoding="utf-8"))
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
    for lock in list(RunLock.held_here):  # a real kill ends the process, and the OS releases its run lock
        lock.release()
    monkeypatch.setattr(train_module, "diffusion_loss", real_loss)
    assert load_resume_state(runs_root / "diffusion/split/resume.pt")["step"] == 10
    # resumed as a user types it: the U-Net's sizes (and every flag not typed) come from the run's config.json,
    # not from the preset of the resuming command (quick: another U-Net, bf16)
    argv = ["train", "--preset", "quick", "--out", str(runs_root), "--name", "split", "--resume", "--steps", "20"]
    resumed = run_cli("diffusion", COMMANDS, argv)
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


def test_resume_without_a_name_from_the_command_line_continues_the_newest_diffusion_run(tiny_run, tmp_path):
    import dataclasses
    import shutil

    from diffusion.autoencoder import train_vae
    from diffusion.baselines_config import VAE_PRESETS
    from dlshared.testing import reset_accelerate

    shutil.copytree(tiny_run["run_dir"], tmp_path / "diffusion" / "mine")  # its files keep their times
    train_vae(dataclasses.replace(VAE_PRESETS["tiny"], out=tmp_path, steps=2, checkpoint_every=1, eval_samples=0))
    reset_accelerate()
    argv = ["train", "--preset", "tiny", "--out", str(tmp_path), "--resume", "--eval-samples", "0"]
    assert Path(run_cli("diffusion", COMMANDS, argv)["run_dir"]).name == "mine"


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


def killed_at_rename(nth: int, action) -> int:
    """Run `action()` in a forked child that dies abruptly (os._exit: no finally, no clean-up, as under kill -9)
    at its nth os.replace; return the child's exit code (9: killed there, 0: it finished first)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            calls = itertools.count(1)
            real = os.replace

            def dies_at_nth(*args, **kwargs):
                if next(calls) == nth:
                    os._exit(9)
                return real(*args, **kwargs)

            os.replace = dies_at_nth
            action()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork to die abruptly mid-save")
def test_the_pipeline_folder_is_never_missing_when_a_save_is_killed(tiny_run, tmp_path, one_thread):
    """A save changes RUN/pipeline only by renames: killed before each of them in turn, it leaves a pipeline that
    loads and holds the old weights or the new ones. So at no moment is the folder missing or half-written. What
    a killed save leaves beside it is removed by the next save."""
    from diffusion.artifacts import save_pipeline_atomically

    folder = tmp_path / "pipeline"
    old = load_pipeline(Path(tiny_run["run_dir"]))
    new = load_pipeline(Path(tiny_run["run_dir"]))
    with torch.no_grad():
        for p in new.unet.parameters():
            p.add_(1.0)
    name, weight = next(iter(old.unet.state_dict().items()))
    for legacy in ("pipeline.tmp", "pipeline.old"):  # what earlier versions left when killed
        (tmp_path / legacy).mkdir()
    save_pipeline_atomically(old, folder)
    outcomes = []
    for nth in itertools.count(1):
        outcomes.append(killed_at_rename(nth, lambda: save_pipeline_atomically(new, folder)))
        saved = load_pipeline(folder).unet.state_dict()[name]
        assert torch.equal(saved, weight) or torch.equal(saved, weight + 1.0)  # old or new, never a mixture
        if outcomes[-1] == 0:
            break
        save_pipeline_atomically(old, folder)  # the next checkpoint: back to the old weights, leftovers gone
        assert sorted(p.name for p in tmp_path.iterdir()) == ["pipeline"]
    assert outcomes[0] == 9 and outcomes[-1] == 0  # it was killed at least once, and finished at last
    assert torch.equal(load_pipeline(folder).unet.state_dict()[name], weight + 1.0)
