"""Typed configuration of every verb, and the presets of `train`.

tiny             seconds: a 2-layer Llama, a few steps per stage (tests)
quick (default)  minutes on a 2-core CPU: pretraining, SFT and DPO reach the quality the README states
full             the same pipeline sized for one GPU (bigger base, more steps, bf16)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from dlshared.cli import Check, Fraction, NonNegative, NonNegativeFloat, Positive, PositiveFloat, Probability
from dlshared.hub import HubRepoId
from dlshared.hubdata import DataSource

PROJECT = "tuner"
"""Name of the run folder family: runs/tuner/<name>/."""

# the rules of this project's own fields, beside dlshared's Positive, PositiveFloat, ...
BelowOne = Annotated[float, Check(lambda v: 0 <= v < 1, "0 or more and below 1", (1.0, -0.1))]
Port = Annotated[int, Check(lambda v: 1 <= v <= 65535, "between 1 and 65535", (0, 70000))]
MAX_NEW_TOKENS = 512
NewTokens = Annotated[int, Check(lambda v: 1 <= v <= MAX_NEW_TOKENS, f"between 1 and {MAX_NEW_TOKENS}", (0, 10_000))]


@dataclass
class TrainConfig:
    # --- what to train ---
    base: str | None = None
    """A Hugging Face causal LM: Hub id or local folder (e.g. a `tinygpt export`). Unset: build the embedded
    Llama and pretrain it on the synthetic arithmetic corpus first (stage pretrain)."""
    data: DataSource = None
    """JSONL. {"prompt","chosen","rejected"} lines: SFT on prompt+chosen, then DPO on the pairs.
    {"prompt","completion"} or {"messages": [...]} lines: SFT only. Unset: the synthetic addition task.
    Or a Hub dataset id, owner/name[/config][:split] (split train unless named): trl-lib/ultrafeedback_binarized.
    Its columns in TRL's names, the same formats (chosen/rejected alone: the prompt is their shared beginning)."""
    stage: Literal["all", "pretrain", "sft", "dpo"] = "all"
    """all = pretrain (only without --base) -> sft -> dpo. One stage alone runs in a new run folder (e.g. DPO on
    --base), or, with --resume, in the existing run --name, on that run's base, replacing the stage's folder."""

    # --- embedded base model (a LlamaConfig; ignored with --base) ---
    n_layer: Positive = 4
    """Transformer blocks of the embedded Llama."""
    n_head: Positive = 4
    """Attention heads (hidden / n_head dimensions each)."""
    hidden: Positive = 128
    """Width of the residual stream (and of the token embedding)."""
    intermediate: Positive = 384
    """SwiGLU width."""
    max_positions: Positive = 64
    """Context length in tokens (characters: the embedded tokenizer is character level)."""

    # --- stage pretrain: plain next-token prediction on raw arithmetic text, all weights ---
    pretrain_steps: Positive = 3000
    """Optimizer steps of pretraining (AdamW, warm-up + cosine)."""
    pretrain_batch: Positive = 32
    """Windows of max_positions tokens per step."""
    pretrain_lr: PositiveFloat = 3e-3
    """Peak learning rate of pretraining."""
    pretrain_docs: Positive = 200_000
    """Statements in the generated corpus."""

    # --- synthetic task (see task.py) ---
    max_number: Positive = 49
    """Operands of the sums are 0..max_number."""
    heldout_fraction: Fraction = 0.1
    """Share of number pairs (or of the --data file's lines) held out for evaluation."""
    format_fractions: tuple[Probability, Probability, Probability, Probability] = (1.0, 0.6, 0.3, 0.1)
    """Share of SFT answers in the required format ("The answer is N.") for each question phrasing of task.py
    ("What is a plus b?", "What is a + b?", "How much is a plus b?", "Add a and b.")."""
    wrong_fraction: Probability = 0.2
    """Share of DPO pairs whose rejected answer is a wrong number (the rest: right number, wrong format)."""
    sft_examples: Positive = 4000
    """Instruction/answer rows generated for SFT."""
    dpo_pairs: Positive = 1000
    """Preference pairs generated for DPO."""
    eval_prompts: Positive = 200
    """Held-out prompts for the task metric and held-out pairs for preference accuracy."""

    # --- LoRA (peft) ---
    lora_r: Positive = 8
    """LoRA rank r: the adapter of a (out, in) layer is B (out, r) @ A (r, in)."""
    lora_alpha: Positive = 16
    """LoRA scale: the update is (alpha / r) * B A."""
    lora_dropout: BelowOne = 0.0
    """Dropout on the adapter's input."""
    target_modules: tuple[str, ...] = ("all-linear",)
    """Linear layers that get adapters: "all-linear" (attention and MLP, every one but the LM head) or names such
    as q_proj v_proj. Attention alone carried the base's arithmetic into the chat template for some seeds only."""
    quantize: Literal["none", "4bit"] = "none"
    """4bit = QLoRA: the frozen base in 4-bit NF4 (bitsandbytes, CUDA only), adapters in bf16."""

    # --- stage sft (trl SFTTrainer, LoRA) ---
    sft_steps: Positive = 1000
    """Optimizer steps of SFT (cosine schedule, 10% warm-up)."""
    sft_batch: Positive = 16
    """Examples per SFT step."""
    sft_lr: PositiveFloat = 2e-3
    """Peak learning rate of the SFT adapter."""

    # --- stage dpo (trl DPOTrainer on the SFT adapter; the reference is the SFT model) ---
    dpo_steps: Positive = 100
    """Optimizer steps of DPO (cosine schedule, 10% warm-up)."""
    dpo_batch: Positive = 16
    """Preference pairs per DPO step."""
    dpo_lr: PositiveFloat = 2e-4
    """Peak learning rate of the DPO adapter."""
    beta: PositiveFloat = 0.1
    """DPO temperature: how far the policy may move from the reference (small = far)."""
    dpo_sft_weight: NonNegativeFloat = 1.0
    """Weight of an SFT (NLL) term on the chosen answers added to the DPO loss (trl loss_type "sft", RPO: Pang
    et al. 2024). Pure DPO (0) lowers the chosen answers' likelihood too, and greedy answers drift (measured:
    "The ansrer is 56."); 0 = plain DPO."""

    # --- run ---
    bf16: bool = False
    """bf16 autocast (CPUs with AMX/AVX-512 and GPUs); off = float32."""
    seed: NonNegative = 0
    """Seeds the initial weights, the data order and every trainer: the same seeds, the same numbers."""
    data_seed: NonNegative = 0
    """Seeds the data: which number pairs are held out and every stage's texts (the split of a --data file). Kept
    fixed while --seed varies, so that seeds are compared on the same held-out set."""
    out: Path = Path("runs")
    """Runs go to OUT/tuner/NAME."""
    name: str | None = None
    """Run folder name (default: a timestamp)."""
    resume: bool = False
    """Continue the run --name (or the newest run) on its base: skip the stages it has finished, or rerun the one
    --stage names. Without --resume or --overwrite, a run folder that exists is refused."""
    overwrite: bool = False
    """Delete the run --name, if it exists, and train it again from scratch."""
    progress: bool = True
    """Show progress bars."""


# seconds: a 2-layer Llama, a few steps per stage, 8 held-out prompts; what the tests run
TINY = TrainConfig(
    n_layer=2,
    n_head=2,
    hidden=32,
    intermediate=64,
    pretrain_steps=30,
    pretrain_batch=8,
    pretrain_docs=2000,
    sft_examples=64,
    sft_steps=4,
    sft_batch=8,
    dpo_pairs=32,
    dpo_steps=4,
    dpo_batch=8,
    eval_prompts=8,
    lora_r=4,
    lora_alpha=8,
    target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
    progress=False,
)
# the same pipeline sized for one GPU: a 25M-parameter base, bigger batches, more steps, bf16
FULL = TrainConfig(
    n_layer=8,
    n_head=8,
    hidden=512,
    intermediate=1376,
    pretrain_steps=6000,
    pretrain_batch=128,
    pretrain_lr=1e-3,
    pretrain_docs=1_000_000,
    sft_examples=20000,
    sft_steps=1500,
    sft_batch=64,
    sft_lr=1e-3,
    dpo_pairs=5000,
    dpo_steps=500,
    dpo_batch=64,
    dpo_lr=2e-4,
    eval_prompts=1000,
    lora_r=16,
    lora_alpha=32,
    bf16=True,
)
# quick = the defaults: minutes on a 2-core CPU, the README's numbers
PRESETS: dict[str, TrainConfig] = {"quick": TrainConfig(), "tiny": TINY, "full": FULL}


@dataclass
class RunArgs:
    ckpt: Path | None = None
    """Run folder (runs/tuner/NAME). Default: the newest finished run under --runs."""
    runs: Path = Path("runs")


@dataclass
class EvalArgs(RunArgs):
    data: DataSource = None
    """A {"prompt","chosen","rejected"} JSONL file or Hub dataset (as train --data takes them): preference accuracy
    on all of it. Default: the run's own held-out prompts and pairs."""
    eval_prompts: Positive | None = None
    """Held-out prompts to score (default: as in training)."""
    pictures: Path | None = None
    """Folder for the eval pictures (unset: the run folder; nothing for the shipped weights)."""


@dataclass
class ExportArgs(RunArgs):
    out: Path = Path("export")
    """Folder to write: a plain Hugging Face model (adapter merged in) + tokenizer."""
    stage: Literal["dpo", "sft"] = "dpo"
    """Which adapter to merge."""
    overwrite: bool = False
    """Replace an earlier export in --out (only a folder an export wrote; anything else is refused)."""
    push_to_hub: HubRepoId = None
    """Upload the finished export folder to this Hugging Face Hub model repo ("your-name/model-name"; needs `hf
    auth login`)."""


@dataclass
class BenchArgs:
    preset: str = "quick"
    """Training preset whose embedded base, batch sizes and LoRA adapter are measured."""
    steps: Positive = 20
    """Timed pretraining steps (after 3 warm-up steps), and SFT steps (the trainer's whole call)."""
    profile: bool = False
    """Then profile LoRA SFT steps under torch.profiler (3 recorded after 2): a Chrome trace (trace.json) and the
    top operators by self time (top_ops.txt, top_ops.md). The timings are taken without it."""
    profile_out: Path | None = None
    """Folder for the profile (default: runs/tuner-profile/<timestamp>; giving it turns --profile on; an earlier
    profile there is replaced, any other non-empty folder refused)."""


@dataclass
class DemoArgs(RunArgs):
    host: str = "127.0.0.1"
    """Interface to serve on; 0.0.0.0 exposes the demo to the network."""
    port: Port = 7860
    """Port to serve on (the next free one if it is taken)."""
    share: bool = False
    """Also open a public gradio.live link (off unless asked: anyone with the link can use the demo)."""
    max_new_tokens: NewTokens = 32
    """Tokens each model may write per answer."""
