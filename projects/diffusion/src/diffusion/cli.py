"""The `diffusion` command: train, train-vae, train-gan, eval, sample, export, bench, demo (see `--help`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dlshared.cli import Command, run_cli

from .baselines_config import GAN_PRESETS, VAE_PRESETS, GANConfig, VAEConfig
from .config import (
    PIPELINE_INDEX,
    PRESETS,
    PROJECT,
    RESUME_MAY_CHANGE,
    SHIPPED,
    BenchArgs,
    DemoArgs,
    EvalArgs,
    ExportArgs,
    SampleArgs,
    TrainConfig,
)

if TYPE_CHECKING:
    import torch  # imported where used: `diffusion --help` should not wait for it


def judge_diffusion_run(run: Path, args: EvalArgs) -> tuple[dict, torch.Tensor, list[str]]:
    """The scores of a diffusion run's samples drawn as `args` say, the samples and the class names."""
    from dlshared.configs import read_config

    from .artifacts import load_model
    from .data import load_data
    from .evaluate import evaluate_pipeline, load_or_train_judge
    from .sample import check_sampling_args

    pipe, classes = load_model(run, args.device)  # a damaged run is refused before the judge is trained
    check_sampling_args(args, len(classes), n=args.n)
    data_cfg = read_config(run / "config.json", TrainConfig)  # the run's own data and split
    data = load_data(data_cfg)
    judge = load_or_train_judge(data_cfg, data, args.runs)
    scores, samples = evaluate_pipeline(pipe, judge, data, args.scheduler, args.steps, args.guidance, args.n, args.seed)
    return scores, samples, classes


def eval_command(args: EvalArgs) -> dict:
    """Score a diffusion run with any sampler, or a VAE / GAN run, with the judge of its data; samples.png shows a
    row of the judged samples per class (pictures.py)."""
    from .artifacts import find_run, run_kind
    from .pictures import eval_title, save_eval_pictures

    run = find_run(args.ckpt, args.runs)
    kind = run_kind(run)
    if kind == "diffusion":
        scores, samples, classes = judge_diffusion_run(run, args)
    else:
        from .baselines import evaluate_baseline

        scores, samples, classes = evaluate_baseline(run, kind, args.n, args.seed, args.runs)
    pictures = save_eval_pictures(run, args.pictures, samples, classes, eval_title(kind, scores, args.seed))
    return {"model": kind, **scores, "run_dir": str(run), "pictures": pictures}


def demo_command(args: DemoArgs) -> None:
    from dlshared.demo import serve

    from .demo import build_demo
    from .train import train

    def build(run_dir):
        return build_demo(run_dir, vae_run=args.vae, runs=args.runs)

    serve("diffusion", args, build, train, PRESETS["quick"], required=PIPELINE_INDEX, shipped=SHIPPED)


COMMANDS = {
    "train": Command(
        "diffusion.train:train",
        TrainConfig,
        "Train a class-conditional diffusion model; writes runs/diffusion/NAME.",
        PRESETS,
        "quick",
        resumes=PROJECT,
        may_change=RESUME_MAY_CHANGE,
        resume_requires=PIPELINE_INDEX,  # VAE and GAN runs write resume.pt too
    ),
    "train-vae": Command(
        "diffusion.autoencoder:train_vae",
        VAEConfig,
        "Train the conditional VAE baseline (day 16).",
        VAE_PRESETS,
        "quick",
    ),
    "train-gan": Command(
        "diffusion.gan:train_gan", GANConfig, "Train the DCGAN baseline (day 17).", GAN_PRESETS, "quick"
    ),
    "eval": Command(eval_command, EvalArgs, "Judge accuracy, FID and KID of generated samples (JSON)."),
    "sample": Command(
        "diffusion.sample:write_samples", SampleArgs, "Write samples as <class>_<index>.png plus grid.png."
    ),
    "export": Command("diffusion.export:export", ExportArgs, "Copy the EMA pipeline out as a diffusers folder."),
    "bench": Command(
        "diffusion.bench:bench",
        BenchArgs,
        "Sampling samples/s per sampler and step count; training samples/s (--profile: a trace).",
    ),
    "demo": Command(demo_command, DemoArgs, "Serve the Gradio demo (trains a quick model first if none exists)."),
}


def main(argv: list[str] | None = None) -> None:
    run_cli("diffusion", COMMANDS, argv)


if __name__ == "__main__":
    main()
