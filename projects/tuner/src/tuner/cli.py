"""The `tuner` command: train, eval, export, bench, demo (see `tuner <verb> --help`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from dlshared.cli import Command, run_cli

from .config import PRESETS, PROJECT, BenchArgs, DemoArgs, EvalArgs, ExportArgs, TrainConfig

SAMPLES = ("history", "pretrain_history", "sft_history", "dpo_history", "base/samples", "sft/samples", "dpo/samples")
"""Left out of the printed JSON line: sample answers and the stages' curves stay in metrics.json."""


def eval_command(args: EvalArgs) -> dict:
    """The metrics of every model the run holds; answers.png: base and tuned answers to held-out prompts."""
    from dlshared.pictures import eval_pictures_dir

    from .artifacts import SHIPPED, resolve_run, run_config
    from .data import load_task_data, read_heldout_pairs
    from .evaluate import evaluate_run
    from .pictures import eval_pictures

    run_dir = resolve_run(args.ckpt, args.runs)
    cfg = run_config(run_dir)
    if args.eval_prompts is not None:
        cfg = replace(cfg, eval_prompts=args.eval_prompts)
    data = load_task_data(cfg) if args.data is None else read_heldout_pairs(args.data)
    result = {**evaluate_run(run_dir, cfg, data), "data": data.source, "run_dir": str(run_dir)}
    folder = eval_pictures_dir(run_dir, args.pictures, shipped=SHIPPED)
    result["pictures"] = eval_pictures(run_dir, cfg, data, folder) if folder is not None else {}
    return result


def demo_command(args: DemoArgs) -> None:
    from dlshared.demo import serve

    from .artifacts import SHIPPED, resolve_run
    from .demo import build_demo, load_models
    from .train import train

    def build(run_dir: Path):
        models = load_models(resolve_run(run_dir, args.runs))  # a --ckpt that is no tuner run: a one-line error
        return build_demo(models, args.max_new_tokens)

    serve(PROJECT, args, build, train, PRESETS["quick"], shipped=SHIPPED)


COMMANDS = {
    "train": Command(
        "tuner.train:train",
        TrainConfig,
        "Pretrain (embedded base), LoRA SFT, then DPO; writes runs/tuner/NAME.",
        PRESETS,
        "quick",
        hide=SAMPLES,
    ),
    "eval": Command(
        eval_command,
        EvalArgs,
        "Task metric and held-out preference accuracy of a run's base, SFT and DPO models; answers.png.",
        hide=SAMPLES,
    ),
    "export": Command(
        "tuner.export:export_merged",
        ExportArgs,
        "Merge an adapter into the base: a plain Hugging Face folder (no peft needed).",
    ),
    "bench": Command(
        "tuner.bench:bench", BenchArgs, "Pretraining tokens/s and LoRA SFT samples/s (--profile: a trace of SFT)."
    ),
    "demo": Command(demo_command, DemoArgs, "One prompt, three answers: base, SFT and DPO side by side (Gradio)."),
}


def main(argv: list[str] | None = None) -> None:
    run_cli("tuner", COMMANDS, argv)


if __name__ == "__main__":
    main()
