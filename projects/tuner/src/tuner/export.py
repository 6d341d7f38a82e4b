"""Merge a LoRA adapter into its base: a plain Hugging Face folder that transformers loads without peft.

merge_and_unload computes W + (alpha / r) * B A once per adapted layer and drops the adapter modules, so the
merged model is the base architecture again (LlamaForCausalLM for the embedded base), with no extra latency
and no peft at inference. The export is checked: the folder is loaded back with AutoModelForCausalLM alone and
its logits compared with the adapter model's on the run's held-out prompts. The folder's README.md is a Hub model
card (dlshared.modelcard) with the run's own held-out scores of the merged stage; `--push-to-hub` uploads it all.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from dlshared.checkpoint import read_json_object
from dlshared.hub import is_repo_id, push_folder
from dlshared.hubdata import parse_hub_id
from dlshared.modelcard import Result, train_command, write_model_card
from dlshared.outputs import check_output_folder, staged_output

from .artifacts import base_path, load_stage, resolve_run, run_config
from .config import PRESETS, ExportArgs, TrainConfig
from .data import load_task_data
from .task import FORMAT, QUESTIONS


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
        write_card(stage, run_dir, args.stage, type(reloaded).__name__, reloaded.num_parameters())
    mask = probe["attention_mask"].bool()
    diff = (logits - adapter_logits)[mask].abs().max().item()  # padding positions do not count
    result = {
        "out": str(out),
        "architecture": type(reloaded).__name__,
        "stage": args.stage,
        "max_abs_logit_diff": diff,
        "run_dir": str(run_dir),
    }
    if args.push_to_hub:  # only a complete folder: staged_output has renamed it into place
        result["pushed"] = push_folder(out, args.push_to_hub)
    return result


STAGE_METRICS = (
    ("task", "task_accuracy", "task accuracy: right and in the required format"),
    ("correct", "correct", "right answer, any format"),
    ("formatted", "formatted", "answers in the required format"),
    ("pref_acc", "preference_accuracy", "preference accuracy, implicit reward against the SFT reference"),
    ("logp_pref_acc", "logp_preference_accuracy", "preference accuracy, reference-free (log-probabilities)"),
)
"""metrics.json's "<stage>/<key>" -> (metric id, the name a reader knows); evaluate.py defines each."""


def write_card(stage: Path, run_dir: Path, adapter: str, architecture: str, parameters: int) -> Path:
    """README.md in the Hub's format (dlshared.modelcard), from the run's config.json and metrics.json: the held-out
    scores of the stage that was merged (a run without metrics.json gets a card that says so)."""
    config = read_json_object(run_dir / "config.json")
    cfg = run_config(run_dir)
    metrics = read_json_object(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else {}
    if hub := parse_hub_id(cfg.data):  # --data owner/name: the Hub's own id
        data_id, data_name = hub.repo, f"{hub.repo} (Hugging Face Hub, split {hub.split})"
    else:
        data_id, data_name = (
            (Path(cfg.data).stem, str(cfg.data)) if cfg.data else ("capstones-addition", "synthetic addition")
        )
    results = [
        Result("text-generation", data_id, data_name, metric, metrics[f"{adapter}/{key}"], label)
        for key, metric, label in STAGE_METRICS
        if isinstance(metrics.get(f"{adapter}/{key}"), int | float)
    ]
    # the Hub links base_model to that model's page: only a Hub id is one (not a folder, nor the run's own base)
    hub_base = cfg.base if cfg.base and not Path(cfg.base).exists() and is_repo_id(cfg.base) else None
    return write_model_card(
        stage,
        title=f"tuner: {adapter.upper()} on {data_name}, merged",
        library_name="transformers",
        pipeline_tag="text-generation",
        base_model=hub_base,
        tags=["pytorch-capstones", "text-generation", "lora", "merged", "trl", adapter],
        datasets=[data_id],
        license="mit",
        results=results,
        summary=_summary(cfg, adapter, architecture, parameters),
        data=_data(cfg, metrics),
        command=train_command("tuner", config, PRESETS, "quick", processes=metrics.get("processes", 1)),
        limits=(
            "A course-sized model: it answers in the style of its tuning data, with no safety training and no"
            " knowledge to rely on; its answers may be wrong. The scores are greedy answers to held-out prompts of"
            " the same task, so they say nothing about other questions. The weights inherit the terms of use of"
            " the base model and of the data they were tuned on."
        ),
        settings_file=None,  # config.json here is transformers' own; the command above is the run's settings
    )


def _summary(cfg: TrainConfig, adapter: str, architecture: str, parameters: int) -> str:
    base = f"`{cfg.base}`" if cfg.base else "a Llama the run pretrained itself on the project's arithmetic corpus"
    stages = "SFT" if adapter == "sft" else "SFT, then DPO"
    return (
        f"A {architecture} ({parameters:,} parameters) tuned by the `tuner` project of PyTorch Capstones: {base},"
        f" then LoRA adapters (r={cfg.lora_r}, alpha={cfg.lora_alpha}, on {' '.join(cfg.target_modules)}) trained by"
        f" {stages} with trl, and the {adapter.upper()} adapter merged into the weights with peft's"
        " `merge_and_unload`. `AutoModelForCausalLM.from_pretrained(FOLDER)` and `AutoTokenizer.from_pretrained"
        "(FOLDER)` load it with transformers alone, no peft."
    )


def _data(cfg: TrainConfig, metrics: dict) -> str:
    template = metrics.get("template", "{prompt}").replace("\n", "\\n")
    heldout = metrics.get("heldout_prompts") or metrics.get("heldout_pairs")
    scored = f" {heldout} held-out prompts score it" if heldout else " Held-out prompts score it"
    if cfg.data is None:
        text = (
            f"The project's synthetic addition task (task.py): sums of two numbers 0..{cfg.max_number}, asked in"
            f" {len(QUESTIONS)} phrasings; {cfg.sft_examples:,} SFT rows and {cfg.dpo_pairs:,} preference pairs (the"
            f' chosen answer right and formatted "{FORMAT.format("N")}").{scored} (number pairs never trained on,'
            " in either order)."
        )
    else:
        text = f"{cfg.data}: {cfg.heldout_fraction:.0%} of its lines held out.{scored}."
    return text + f" A question becomes the prompt `{template}`."
