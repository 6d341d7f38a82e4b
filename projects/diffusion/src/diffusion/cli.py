"""The `diffusion` command: train, train-vae, train-gan, eval, sample, export, bench, demo (`diffusion <verb> --help`)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from dlshared.cli import Command, UserError, run_cli

from .config import PRESETS, BenchArgs, DemoArgs, EvalArgs, ExportArgs, SampleArgs, TrainConfig


def _summary(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "history"}


def train_command(cfg: TrainConfig) -> dict:
    from .train import train

    metrics = train(cfg)
    print(json.dumps(_summary(metrics)))
    return metrics


def eval_command(args: EvalArgs) -> dict:
    """Score a diffusion run with any sampler, or a VAE / GAN run, with the judge of its data."""
    from dlshared.checkpoint import load_json

    from .artifacts import find_run
    from .config import config_from_dict

    run = find_run(args.ckpt, args.runs)
    if not (run / "config.json").is_file():
        raise UserError(f"--ckpt {run}: not a run folder of this project (no config.json)")
    kind = load_json(run / "config.json").get("model", "diffusion")
    if kind == "diffusion":
        from .sample import check_sampling_args
        from .train import evaluate_run

        cfg = config_from_dict(load_json(run / "config.json"))
        cfg.out = args.runs
        check_sampling_args(args, len(load_json(run / "card.json")["classes"]), n=args.n)
        metrics = evaluate_run(cfg, run, args.scheduler, args.steps, args.guidance, args.n, args.seed)
    else:
        from .baselines import evaluate_baseline

        metrics = evaluate_baseline(run, args.n, args.seed, args.runs)
    metrics = {"model": kind, **metrics, "run_dir": str(run)}
    print(json.dumps(metrics))
    return metrics


def sample_command(args: SampleArgs) -> dict:
    from .sample import sample_command as sample

    result = sample(args)
    print(json.dumps(result))
    return result


def export_command(args: ExportArgs) -> dict:
    from .artifacts import find_run, load_card, pipeline_folder

    run = find_run(args.ckpt, args.runs)
    source = pipeline_folder(run)
    out = args.out or run / "export"
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(source, out)
    (out / "card.json").write_text(json.dumps(load_card(run), indent=2))
    result = {
        "out": str(out),
        "format": "diffusers",
        "files": sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()),
    }
    print(json.dumps(result))
    return result


def bench_command(args: BenchArgs) -> dict:
    from .bench import bench

    result = bench(args)
    print(json.dumps(result))
    return result


def demo_command(args: DemoArgs) -> None:
    from dlshared.demo import launch, run_or_train

    from .demo import build_demo
    from .train import train

    def train_quick() -> Path:
        return Path(train(dataclasses.replace(PRESETS["quick"], out=args.runs))["run_dir"])

    run_dir = args.ckpt or run_or_train(
        "diffusion", train_quick, args.runs, required="pipeline/model_index.json"
    )
    print(f"serving {run_dir}")
    launch(build_demo(Path(run_dir), vae_run=args.vae, runs=args.runs), host=args.host, port=args.port)


def _baseline_commands() -> dict[str, Command]:
    from .baselines_config import GAN_PRESETS, VAE_PRESETS, GANConfig, VAEConfig

    def train_vae(cfg: VAEConfig) -> dict:
        from .autoencoder import train_vae

        metrics = train_vae(cfg)
        print(json.dumps(_summary(metrics)))
        return metrics

    def train_gan(cfg: GANConfig) -> dict:
        from .gan import train_gan

        metrics = train_gan(cfg)
        print(json.dumps(_summary(metrics)))
        return metrics

    return {
        "train-vae": Command(
            train_vae, VAEConfig, "Train the conditional VAE baseline (day 16).", VAE_PRESETS, "quick"
        ),
        "train-gan": Command(
            train_gan, GANConfig, "Train the DCGAN baseline (day 17).", GAN_PRESETS, "quick"
        ),
    }


COMMANDS = {
    "train": Command(
        train_command,
        TrainConfig,
        "Train a class-conditional diffusion model; writes runs/diffusion/NAME.",
        PRESETS,
        "quick",
    ),
    **_baseline_commands(),
    "eval": Command(eval_command, EvalArgs, "Judge accuracy, FID and KID of generated samples (JSON)."),
    "sample": Command(sample_command, SampleArgs, "Write samples as <class>_<index>.png plus grid.png."),
    "export": Command(export_command, ExportArgs, "Copy the EMA pipeline out as a diffusers folder."),
    "bench": Command(
        bench_command, BenchArgs, "Sampling samples/s per scheduler and step count; training samples/s."
    ),
    "demo": Command(
        demo_command, DemoArgs, "Serve the Gradio demo (trains a quick model first if none exists)."
    ),
}


def main(argv: list[str] | None = None) -> None:
    run_cli("diffusion", COMMANDS, argv)


if __name__ == "__main__":
    main()
