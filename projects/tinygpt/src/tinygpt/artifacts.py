"""A trained model on disk: RUN/model.safetensors + model_config.json + tokenizer.json (+ config.json, metrics.json).

Loading reads safetensors and JSON only: no pickle, so a downloaded run folder cannot run code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from dlshared.checkpoint import WEIGHTS_NAME, load_json, save_json, save_weights
from dlshared.cli import UserError, validate
from dlshared.device import pick_device
from dlshared.runs import latest_run

from .config import PROJECT, TrainConfig, check_relations, config_from_dict
from .model import GPTConfig, LanguageModel, build_model
from .tokenizer import TOKENIZER_FILE, Tokenizer, load_tokenizer

MODEL_CONFIG_NAME = "model_config.json"
SHIPPED = Path(__file__).resolve().parent / "weights" / "quick"
"""The quick preset's seed-0 run, shipped with the package (weights/quick/README.md says how it was made): what
`tinygpt demo` serves on a fresh clone, at once, before anything is trained."""


def save_model(
    model: LanguageModel, tokenizer: Tokenizer, folder: Path, metadata: dict[str, str] | None = None
) -> None:
    """Weights, architecture and tokenizer: everything `load_model` needs. Each file is written atomically."""
    save_json(dataclasses.asdict(model.cfg), folder / MODEL_CONFIG_NAME)
    tokenizer.save(folder)
    save_weights(model, folder / WEIGHTS_NAME, metadata=metadata)


@dataclass
class LoadedModel:
    model: LanguageModel
    tokenizer: Tokenizer
    run_dir: Path
    device: torch.device


def resolve_checkpoint(ckpt: Path | None, runs: Path) -> Path:
    """--ckpt as given, or the newest finished run under --runs."""
    if ckpt is None:
        ckpt = latest_run(PROJECT, runs, required=WEIGHTS_NAME)
        if ckpt is None:
            raise UserError(f"no trained model under {runs / PROJECT}; run `tinygpt train` or pass --ckpt RUN_DIR")
    return Path(ckpt)


def read_run_config(run_dir: Path) -> TrainConfig:
    """RUN/config.json, the run's training config, or a one-line error naming it."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise UserError(f"{run_dir} has no config.json: it is not a complete tinygpt run folder")
    try:
        return check_relations(validate(config_from_dict(load_json(path))))
    except (OSError, ValueError, TypeError, AttributeError, UserError) as err:  # not JSON, not an object, bad values
        raise UserError(
            f"{path} is not a tinygpt training config ({_reason(err)}); copy the run folder again"
        ) from None


def check_device(name: str) -> torch.device:
    """--device as a torch.device, or a one-line error naming the devices there are (checked before any work)."""
    try:
        return pick_device(name)
    except ValueError as err:
        raise UserError(f"--device {name}: {err}") from None


def load_model(run_dir: Path, device: str = "auto") -> LoadedModel:
    """The model, tokenizer and device of a run folder; a missing, truncated or foreign file is a one-line error
    naming it."""
    run_dir = Path(run_dir)
    target = check_device(device)
    for name in (MODEL_CONFIG_NAME, WEIGHTS_NAME, TOKENIZER_FILE):
        if not (run_dir / name).is_file():
            raise UserError(f"{run_dir} is not a tinygpt run folder: {name} is missing")
    cfg = read_model_config(run_dir / MODEL_CONFIG_NAME)
    tokenizer = read_tokenizer(run_dir)
    if tokenizer.vocab_size + (cfg.objective == "mlm") != cfg.vocab_size:  # mlm: one more, the mask token
        raise UserError(
            f"{run_dir / TOKENIZER_FILE} has {tokenizer.vocab_size} tokens but {MODEL_CONFIG_NAME} says "
            f"{cfg.vocab_size}: the files come from different runs; copy the whole run folder again"
        )
    model = build_model(cfg)
    model.load_state_dict(read_weights(run_dir / WEIGHTS_NAME, model.state_dict()))
    return LoadedModel(model.to(target).eval(), tokenizer, run_dir, target)


def read_model_config(path: Path) -> GPTConfig:
    """model_config.json as a GPTConfig whose sizes can build a model."""
    try:
        cfg = GPTConfig(**load_json(path))
    except (OSError, ValueError, TypeError) as err:  # unreadable, not JSON, not an object of GPTConfig's fields
        raise UserError(f"{path} is not a tinygpt model config ({_reason(err)}); copy the run folder again") from None
    sizes = {name: getattr(cfg, name) for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")}
    bad = [f"{name}={value!r}" for name, value in sizes.items() if type(value) is not int or value < 1]
    unknown = cfg.arch not in ("gpt2", "llama", "lstm") or cfg.objective not in ("clm", "mlm")
    if bad or unknown or (cfg.arch != "lstm" and cfg.n_embd % cfg.n_head):
        found = (
            ", ".join(bad)
            or f"arch={cfg.arch!r}, objective={cfg.objective!r}, n_embd={cfg.n_embd}, n_head={cfg.n_head}"
        )
        raise UserError(f"{path} describes no model this project builds ({found}); copy the run folder again")
    return cfg


def read_tokenizer(folder: Path) -> Tokenizer:
    """folder/tokenizer.json, or a one-line error naming it (garbage, a foreign tokenizer type)."""
    try:
        return load_tokenizer(folder)
    except ValueError as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{message}; copy the run folder again or retrain") from None


def read_weights(path: Path, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, checked against the names and shapes the model expects."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise UserError(f"{path} cannot be read ({_reason(err)}): truncated or not safetensors; retrain") from None
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    wrong = [k for k in expected.keys() & state.keys() if state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        if wrong:
            name = sorted(wrong)[0]
            what = f"{name} is {list(state[name].shape)}, the model's is {list(expected[name].shape)}"
        else:
            what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise UserError(f"{path} holds weights of another model ({what}); use the run folder it was saved in")
    return state


def _reason(err: Exception) -> str:
    """An exception as a short one-line reason."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__
