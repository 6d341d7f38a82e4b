"""A run folder and the three models it holds, as eval, export and the demo load them.

runs/tuner/NAME/
    config.json      the resolved TrainConfig
    base/            the embedded base, when this run pretrained it (an ordinary HF folder); else config.base
    sft/  dpo/       LoRA adapters (peft save_pretrained: adapter_config.json + adapter_model.safetensors)
    logs/            TensorBoard event files of every stage
    metrics.json     every stage's training numbers and the evaluation of base, SFT and DPO models
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from dlshared.checkpoint import load_json
from dlshared.cli import UserError, validate
from dlshared.runs import latest_run

from .config import PROJECT, TrainConfig

SHIPPED = Path(__file__).resolve().parent / "weights" / "quick"
"""The quick preset's run (base, SFT and DPO adapters), shipped with the package (weights/quick/README.md: command,
commit, scores): `tuner demo` serves it at once on a fresh clone, and eval draws no pictures into its folder."""
STAGES = ("base", "sft", "dpo")
DONE = {"base": "model.safetensors", "sft": "adapter_model.safetensors", "dpo": "adapter_model.safetensors"}


def resolve_run(ckpt: Path | None, runs: Path) -> Path:
    """--ckpt when given (it must be a tuner run folder), else the newest finished run under --runs."""
    if ckpt is not None:
        if not (Path(ckpt) / "config.json").is_file():
            raise UserError(f"{ckpt}: not a tuner run folder (no config.json); train one with `tuner train`")
        return Path(ckpt)
    run = latest_run(PROJECT, runs, required="metrics.json")
    if run is None:
        raise UserError(f"no finished tuner run under {Path(runs) / PROJECT}; train one with `tuner train`")
    return run


def config_from_dict(values: dict) -> TrainConfig:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in values.items() if k in fields}
    if values.get("out") is not None:  # --data stays a string: it may be a Hub dataset id
        values["out"] = Path(values["out"])
    for key in ("target_modules", "format_fractions"):
        if key in values:
            values[key] = tuple(values[key])
    return TrainConfig(**values)


def run_config(run_dir: Path) -> TrainConfig:
    """RUN/config.json as a TrainConfig, or a one-line error naming the file."""
    path = Path(run_dir) / "config.json"
    try:
        return validate(config_from_dict(read_json(path)))
    except (TypeError, ValueError, UserError) as err:  # fields of another kind, or values no run could have had
        raise UserError(f"{path} is not a tuner run config ({reason(err)}); copy the run folder again") from None


def read_json(path: Path) -> dict:
    """A JSON object from `path`, or a one-line error naming the file."""
    try:
        value = load_json(path)
    except (OSError, ValueError) as err:  # unreadable, not UTF-8, not JSON
        raise UserError(f"{path} cannot be read ({reason(err)}); copy the run folder again") from None
    if not isinstance(value, dict):
        raise UserError(f"{path} holds a JSON {type(value).__name__}, not an object; copy the run folder again")
    return value


def reason(err: BaseException) -> str:
    """An exception as a short one-line reason (library messages can run over many lines)."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:200]}" if lines else type(err).__name__


def base_path(run_dir: Path, cfg: TrainConfig) -> str | Path:
    return cfg.base if cfg.base is not None else Path(run_dir) / "base"


def has_stage(run_dir: Path, cfg: TrainConfig, stage: str) -> bool:
    if stage == "base" and cfg.base is not None:
        return True
    return (Path(run_dir) / stage / DONE[stage]).is_file()


def load_stage(run_dir: Path, stage: str, cfg: TrainConfig | None = None):
    """(model in eval mode, tokenizer) of one stage: the base, or the base with the SFT or DPO adapter."""
    from .lora import load_policy

    cfg = cfg or run_config(run_dir)
    if not has_stage(run_dir, cfg, stage):
        raise UserError(f"{run_dir}: no {stage} model (stages present: {', '.join(present(run_dir, cfg))})")
    adapter = None if stage == "base" else Path(run_dir) / stage
    model, tokenizer = load_policy(base_path(run_dir, cfg), adapter, cfg, trainable=False)
    return model.eval(), tokenizer


def present(run_dir: Path, cfg: TrainConfig) -> list[str]:
    return [s for s in STAGES if has_stage(run_dir, cfg, s)] or ["none"]


def template_of(run_dir: Path) -> str:
    """How a question becomes a prompt for this run: the synthetic task's template, or the raw text."""
    from .task import PROMPT_TEMPLATE

    return PROMPT_TEMPLATE if run_config(run_dir).data is None else "{prompt}"
