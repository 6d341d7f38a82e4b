"""The `tuner` command: train, eval, export, demo (see `tuner <verb> --help`)."""

from __future__ import annotations

import json
from pathlib import Path

from dlshared.cli import Command, run_cli

from .config import PRESETS, DemoArgs, EvalArgs, ExportArgs, TrainConfig, replace


def summary(metrics: dict) -> dict:
    """The one-line JSON: numbers only (sample answers stay in metrics.json)."""
    return {k: v for k, v in metrics.items() if not k.endswith("/samples")}


def train_command(cfg: TrainConfig) -> dict:
    from .train import train

    metrics = train(cfg)
    print(json.dumps(summary(metrics)))
    return metrics


def eval_command(args: EvalArgs) -> dict:
    from .artifacts import resolve_run, run_config
    from .data import load_task_data
    from .evaluate import evaluate_run

    run_dir = resolve_run(args.ckpt, args.runs)
    cfg = run_config(run_dir)
    if args.eval_prompts is not None:
        cfg.eval_prompts = args.eval_prompts
    if args.data is not None:  # the whole file is held out: the run never saw it
        cfg = replace(cfg, data=args.data, heldout_fraction=0.5)
        data = load_task_data(cfg)
        data.heldout_pairs, data.eval_items = data.heldout_pairs + data.train_pairs, []
        if not data.heldout_pairs:
            from dlshared.cli import UserError

            raise UserError(f"{args.data}: eval needs {{prompt, chosen, rejected}} pairs")
    else:
        data = load_task_data(cfg)
    metrics = {**evaluate_run(run_dir, cfg, data), "data": data.source, "run_dir": str(run_dir)}
    print(json.dumps(summary(metrics)))
    return metrics


def export_command(args: ExportArgs) -> dict:
    from .export import export_merged

    result = export_merged(args)
    print(json.dumps(result))
    return result


def demo_command(args: DemoArgs) -> None:
    from dlshared.demo import launch, run_or_train

    from .artifacts import resolve_run
    from .demo import build_demo, load_models
    from .train import train

    def train_quick() -> Path:
        return Path(train(replace(PRESETS["quick"], out=args.runs))["run_dir"])

    run_dir = (
        resolve_run(args.ckpt, args.runs) if args.ckpt else run_or_train("tuner", train_quick, args.runs)
    )
    models = load_models(Path(run_dir))
    print(f"serving {run_dir}")
    launch(build_demo(models, args.max_new_tokens), host=args.host, port=args.port)


COMMANDS = {
    "train": Command(
        train_command,
        TrainConfig,
        "Pretrain (embedded base), LoRA SFT, then DPO; writes runs/tuner/NAME.",
        PRESETS,
        "quick",
    ),  # fmt: skip
    "eval": Command(
        eval_command,
        EvalArgs,
        "Task metric and held-out preference accuracy of a run's base, SFT and DPO models.",
    ),
    "export": Command(
        export_command,
        ExportArgs,
        "Merge an adapter into the base: a plain Hugging Face folder (no peft needed).",
    ),
    "demo": Command(
        demo_command, DemoArgs, "One prompt, three answers: base, SFT and DPO side by side (Gradio)."
    ),
}


def main(argv: list[str] | None = None) -> None:
    run_cli("tuner", COMMANDS, argv)


if __name__ == "__main__":
    main()
