"""LoRA adapters (peft) and the QLoRA option: course day 29.

LoRA (Hu et al. 2021, https://arxiv.org/abs/2106.09685) freezes the base weight W and learns a low-rank
update, W x + (alpha / r) * B A x with A: (r, in), B: (out, r), B = 0 at the start so training starts from the
base model exactly. Only A and B train: a few percent of the weights or less, and the adapter file is small.
QLoRA (Dettmers et al. 2023, https://arxiv.org/abs/2305.14314) also stores the frozen base in 4-bit NF4
(bitsandbytes); it needs a CUDA GPU, so here it is an option with a clear message where it cannot run.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

from dlshared.cli import UserError

from .config import TrainConfig


def lora_config(cfg: TrainConfig):
    """peft's LoraConfig of `cfg` (its values are checked where they are declared, in config.py)."""
    from peft import LoraConfig

    targets = cfg.target_modules
    targets = "all-linear" if targets == ("all-linear",) else list(targets)
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )


def check_targets(model, cfg: TrainConfig) -> None:
    """A target module name the model lacks is a user error (peft's own message is a long traceback)."""
    if cfg.target_modules == ("all-linear",):
        return
    names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    missing = [t for t in cfg.target_modules if t not in names]
    if missing:
        raise UserError(f"--target-modules {missing} not in this model; its linear layers: {', '.join(sorted(names))}")


def trainable_report(model) -> dict:
    """Trainable parameters (adapters) against the frozen base model's parameters."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    base = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n and ".ref." not in n)
    return {
        "trainable_params": trainable,
        "base_params": base,
        "trainable_percent": round(100 * trainable / base, 3),
    }


def quantization_config(cfg: TrainConfig):
    """None, or the 4-bit NF4 config of QLoRA; a machine that cannot run it gets a one-line reason."""
    if cfg.quantize == "none":
        return None
    if not torch.cuda.is_available():
        raise UserError(
            "--quantize 4bit (QLoRA) needs a CUDA GPU (bitsandbytes 4-bit kernels); this machine has none. "
            "Use --quantize none: LoRA on the full-precision base."
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise UserError(
            "--quantize 4bit needs bitsandbytes: `uv sync --extra qlora` (the tuner's QLoRA extra), then run again"
        )
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def load_policy(base: str | Path, adapter: Path | None, cfg: TrainConfig, trainable: bool):
    """(model, tokenizer): the base, with the adapter at `adapter` on top when given (peft PeftModel)."""
    from .base import load_base

    quant = quantization_config(cfg)
    model, tokenizer = load_base(base, quantization_config=quant)
    if quant is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if adapter is not None:
        model = attach_adapter(model, adapter, trainable=trainable)
    return model, tokenizer


def attach_adapter(model, folder: Path, name: str = "default", trainable: bool = False):
    """`model` with the LoRA adapter saved in `folder` on it (a PeftModel; a second adapter is added by `name`).
    A truncated, garbled or foreign adapter is a one-line error naming the file, and what to do."""
    from peft import PeftModel
    from safetensors import SafetensorError

    from .artifacts import reason

    config, weights = Path(folder) / "adapter_config.json", Path(folder) / "adapter_model.safetensors"
    redo = f"train that stage again (tuner train --stage {Path(folder).name} --resume --name RUN)"
    try:
        if isinstance(model, PeftModel):
            model.load_adapter(str(folder), adapter_name=name, is_trainable=trainable)
        else:
            model = PeftModel.from_pretrained(model, str(folder), adapter_name=name, is_trainable=trainable)
    except (KeyError, TypeError, json.JSONDecodeError) as err:  # not JSON, an unknown peft_type, unknown fields
        raise UserError(f"{config} is not a LoRA adapter config ({reason(err)}); {redo}") from None
    except SafetensorError as err:
        raise UserError(f"{weights} cannot be read ({reason(err)}): truncated or not safetensors; {redo}") from None
    except RuntimeError as err:  # "size mismatch": an adapter of another rank or another base
        raise UserError(f"{weights} does not fit this base ({reason(err)}); {redo}") from None
    except (OSError, ValueError) as err:  # a file missing, or peft's own refusal
        raise UserError(f"{folder}: cannot load the LoRA adapter ({reason(err)}); {redo}") from None
    return model
