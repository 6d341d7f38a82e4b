"""Merge a LoRA adapter into its base: a plain Hugging Face folder that transformers loads without peft.

merge_and_unload computes W + (alpha / r) * B A once per adapted layer and drops the adapter modules, so the
merged model is the base architecture again (LlamaForCausalLM for the embedded base), with no extra latency
and no peft at inference. The export is checked: the folder is loaded back with AutoModelForCausalLM alone and
its logits compared with the adapter model's on the run's held-out prompts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from dlshared.outputs import check_output_folder, staged_output

from .artifacts import base_path, load_stage, resolve_run, run_config
from .config import ExportArgs
from .data import load_task_data


def merged_model(run_dir: Path, stage: str = "dpo"):
    """(merged transformers model, tokenizer, the adapter model's logits on a probe batch, probe batch)."""
    cfg = dataclasses.replace(run_config(run_dir), quantize="none")  # merge into full-precision weights
    model, tokenizer = load_stage(run_dir, stage, cfg)
    probe = probe_batch(cfg, tokenizer)
    with torch.no_grad():
        adapter_logits = model(**probe).logits
    merged = model.merge_and_unload()  # a plain PreTrainedModel again
    return merged.eval(), tokenizer, adapter_logits, probe


def probe_batch(cfg, tokenizer) -> dict:
    """A few held-out prompts with their chosen answers, right-padded: the inputs the parity check runs on."""
    data = load_task_data(dataclasses.replace(cfg, eval_prompts=min(cfg.eval_prompts, 8)))
    # a run trained on an SFT file has no pairs: its first prompt/completion rows are the probe instead
    completions = [{"prompt": r.get("prompt", ""), "chosen": r.get("completion", "")} for r in data.sft_rows[:8]]
    pairs = data.heldout_pairs or completions
    texts = [p["prompt"] + p["chosen"] for p in pairs[:8]]
    side, tokenizer.padding_side = tokenizer.padding_side, "right"
    try:
        return dict(tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False))
    finally:
        tokenizer.padding_side = side


def export_merged(args: ExportArgs) -> dict:
    """The merged model, written into a staging folder that becomes --out once it is complete and checked (never
    into a folder an export did not write, nor over the run or the base it reads)."""
    from transformers import AutoModelForCausalLM

    run_dir = resolve_run(args.ckpt, args.runs)
    base = base_path(run_dir, run_config(run_dir))
    sources = (run_dir, *([Path(base)] if Path(base).exists() else []))  # a Hub id is no folder of this machine
    out = Path(args.out).resolve()
    check_output_folder(out, args.overwrite, sources)  # before loading and merging
    merged, tokenizer, adapter_logits, probe = merged_model(run_dir, args.stage)
    merged.generation_config.eos_token_id = tokenizer.eos_token_id
    merged.generation_config.pad_token_id = tokenizer.pad_token_id
    with staged_output(out, args.overwrite, sources) as stage:
        merged.save_pretrained(stage)  # config.json + model.safetensors
        tokenizer.save_pretrained(stage)
        reloaded = AutoModelForCausalLM.from_pretrained(stage).eval()  # transformers alone: no peft involved
        with torch.no_grad():
            logits = reloaded(**probe).logits
    mask = probe["attention_mask"].bool()
    diff = (logits - adapter_logits)[mask].abs().max().item()  # padding positions do not count
    return {
        "out": str(out),
        "architecture": type(reloaded).__name__,
        "stage": args.stage,
        "max_abs_logit_diff": diff,
        "run_dir": str(run_dir),
    }
