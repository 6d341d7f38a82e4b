"""Typed configuration of every verb, and the presets of `train`.

tiny                  seconds, for tests
quick (default)       the embedded corpus (Python's standard library source), minutes on a 2-core CPU
shakespeare-char-cpu  nanoGPT's CPU recipe on tiny Shakespeare, character level
shakespeare-char      nanoGPT's GPU recipe (config/train_shakespeare_char.py), character level
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from dlshared.cli import Check, NonNegative, NonNegativeFloat, Positive, PositiveFloat, UserError
from dlshared.hub import HubRepoId
from dlshared.hubdata import DataSource

PROJECT = "tinygpt"
"""Name of the run folder family: runs/tinygpt/<name>/."""

# the rules of this project's own fields, beside dlshared's Positive, PositiveFloat, ...
BelowOne = Annotated[float, Check(lambda v: 0 <= v < 1, "0 or more and below 1", (1.0, -0.1))]
"""Dropout and Adam's betas: 1 would drop everything / never forget."""
TopP = Annotated[float, Check(lambda v: 0 < v <= 1, "greater than 0 and at most 1", (0.0, 1.5))]
Port = Annotated[int, Check(lambda v: 1 <= v <= 65535, "between 1 and 65535", (0, 70000))]


@dataclass
class TrainConfig:
    # --- data ---
    data: DataSource = None
    """A local UTF-8 text file: first 90% train, last 10% validation. Unset: --dataset decides.
    Or a Hub dataset id, owner/name[/config][:split] (split train unless named): Salesforce/wikitext/wikitext-2-raw-v1.
    Its `text` column (else its only string column) is the text, a row a line, split 90/10 the same way."""
    dataset: Literal["auto", "stdlib", "shakespeare"] = "auto"
    """auto = the --data text when given, else stdlib (Python's standard library source, on every machine).
    shakespeare = tiny Shakespeare (1.1 MB, shipped with the package)."""
    max_chars: Positive | None = None
    """Use only the first N characters of the text (quick experiments, tests)."""
    tokenizer: Literal["char", "bpe"] = "char"
    """char: one token per character (nanoGPT's shakespeare_char). bpe: byte-level BPE trained on the train split."""
    vocab_size: Positive = 2048
    """bpe: vocabulary size to train (256 bytes + merges + specials). Ignored for char."""

    # --- model (see model.GPTConfig) ---
    arch: Literal["gpt2", "llama", "lstm"] = "gpt2"
    """gpt2: learned positions, LayerNorm, GELU. llama: rotary positions, RMSNorm, SwiGLU. lstm: a character LSTM
    (n_layer layers of width n_embd; the recurrent baseline, course day 21)."""
    objective: Literal["clm", "mlm"] = "clm"
    """clm: predict the next token (causal attention: a decoder, GPT). mlm: predict 15% masked tokens from both
    sides (bidirectional attention: an encoder, BERT; course day 25). An mlm model is scored by eval, not sampled."""
    n_layer: Positive = 6
    n_head: Positive = 6
    """Attention heads; must divide --n-embd (each head gets n_embd / n_head dimensions)."""
    n_embd: Positive = 384
    block_size: Positive = 256
    """Context length in tokens."""
    dropout: BelowOne = 0.0
    bias: bool = False

    # --- optimisation ---
    batch_size: Positive = 64
    """Sequences per micro-batch and process (tokens per step = batch x block x grad_accum x processes)."""
    grad_accum: Positive = 1
    max_iters: Positive = 5000
    """Optimizer steps."""
    lr: PositiveFloat = 1e-3
    """Peak learning rate (after linear warm-up)."""
    min_lr: NonNegativeFloat = 1e-4
    """Cosine decay ends here, at lr_decay_iters."""
    warmup_iters: NonNegative = 100
    lr_decay_iters: Positive | None = None
    """Default: max_iters."""
    weight_decay: NonNegativeFloat = 0.1
    """AdamW decoupled weight decay, on matrices and embeddings only (not biases or norms)."""
    beta1: BelowOne = 0.9
    beta2: BelowOne = 0.99
    grad_clip: NonNegativeFloat = 1.0
    """Clip the global gradient norm (0 = off)."""
    fused_adamw: bool = True
    """One fused AdamW kernel over all parameters (CPU and CUDA) instead of a Python loop of per-tensor ops."""
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    """Autocast through Accelerate. bf16 runs on recent CPUs (AMX, AVX-512) and GPUs; fp16 is GPU only."""
    compile: bool = False
    """torch.compile the model (first steps pay for compilation; worth it on long runs)."""
    triton_kernels: bool = True
    """arch llama on CUDA: RMSNorm as the fused Triton kernel of kernels.py, forward and backward (course day 34).
    The CPU, --compile and a machine without Triton use PyTorch's op; the weights are the same either way."""
    reuse_freed_memory: bool = True
    """Linux/glibc: keep freed memory for reuse instead of returning it to the OS after every step (no page
    faults on large activations; the process holds its peak memory). See perf.reuse_freed_memory."""

    # --- evaluation, logging, checkpoints ---
    eval_interval: Positive = 250
    """Estimate train/val loss and checkpoint every N steps (and at the end)."""
    eval_iters: Positive = 200
    """Batches per loss estimate: the estimate scores eval_iters x batch_size windows of each split. The final
    val_loss scores every window of the validation split (what `tinygpt eval` reports)."""
    log_interval: Positive = 10
    """Log loss, learning rate, tokens/s and MFU to TensorBoard every N steps."""
    throughput_warmup: NonNegative | None = None
    """Steps left out of tokens/s and MFU: the first ones pay for memory allocation and, with --compile,
    compilation. Unset: 3, or 10 with --compile."""
    sample_tokens: NonNegative = 200
    """Tokens of text sampled into the log and metrics.json at the end (0 = none)."""

    # --- run ---
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps."""
    parallel: Literal["ddp", "fsdp"] = "ddp"
    """Several processes (torchrun, accelerate launch): ddp = each holds the whole model and AdamW state, gradients
    are all-reduced; fsdp = FSDP2 shards every block's parameters, gradients and AdamW state across the processes
    (about 1/N each), gathering a block's weights only while it runs (course day 33; parallel.py). One process:
    nothing to shard, either trains alike."""
    seed: int = 1337
    out: Path = Path("runs")
    """Runs go to OUT/tinygpt/NAME."""
    name: str | None = None
    """Run folder name (default: a timestamp)."""
    resume: bool = False
    """Continue the run --name (or the newest run with a resume.pt) from its last checkpoint, with the run's own
    config.json: flags typed with --resume change run-time fields (e.g. --max-iters), never the architecture or the
    text (RESUME_MAY_CHANGE)."""
    overwrite: bool = False
    """Replace an earlier run of the same --name (without it, a non-empty run folder is refused)."""
    progress: bool = True
    """Show a progress bar."""
    peak_flops: PositiveFloat | None = None
    """Peak FLOP/s of one device for MFU. Unset: a table for known GPUs; on a CPU, a measured matmul."""


ARCHITECTURE = ("arch", "objective", "n_layer", "n_head", "n_embd", "block_size", "bias", "tokenizer", "vocab_size")
"""Fields that fix the shape of the weights or the token ids."""
RESUME_MAY_CHANGE = tuple(
    field.name
    for field in dataclasses.fields(TrainConfig)
    if field.name not in (*ARCHITECTURE, "data", "dataset", "max_chars")
)
"""Fields `train --resume` may change (nanoGPT style: --max-iters, the learning rates, evaluation, device, ...);
the architecture and the text stay the run's own (dlshared.configs.resume_from_run refuses a typed change)."""


# nanoGPT's config/train_shakespeare_char.py, so the two can be compared at the same settings on one machine
SHAKESPEARE_CHAR = TrainConfig(
    dataset="shakespeare",
    tokenizer="char",
    arch="gpt2",
    n_layer=6,
    n_head=6,
    n_embd=384,
    block_size=256,
    dropout=0.2,
    batch_size=64,
    max_iters=5000,
    lr=1e-3,
    min_lr=1e-4,
    warmup_iters=100,
    eval_interval=250,
    eval_iters=200,
    beta2=0.99,
    weight_decay=0.1,
)
# the CPU settings nanoGPT's README gives for the same recipe (a "baby GPT" in a few minutes)
SHAKESPEARE_CHAR_CPU = dataclasses.replace(
    SHAKESPEARE_CHAR,
    n_layer=4,
    n_head=4,
    n_embd=128,
    block_size=64,
    batch_size=12,
    max_iters=2000,
    lr_decay_iters=2000,
    dropout=0.0,
    eval_iters=20,
)
# the default: a Llama-style model on the stdlib source, minutes on a 2-core CPU (see README)
QUICK = TrainConfig(
    dataset="stdlib",
    tokenizer="char",
    arch="llama",
    n_layer=4,
    n_head=4,
    n_embd=128,
    block_size=128,
    batch_size=16,
    max_iters=2500,
    lr=2e-3,
    min_lr=2e-4,
    warmup_iters=50,
    eval_interval=500,
    eval_iters=20,
    mixed_precision="no",
)
# seconds: a slice of the corpus, a 2-layer model, 40 steps; what the tests run
TINY = dataclasses.replace(
    QUICK,
    max_chars=60_000,
    n_layer=2,
    n_head=2,
    n_embd=32,
    block_size=32,
    batch_size=8,
    max_iters=40,
    lr=3e-3,
    min_lr=3e-4,
    warmup_iters=5,
    eval_interval=20,
    eval_iters=4,
    log_interval=5,
    sample_tokens=20,
    progress=False,
)
# day 21's recurrent baseline: a 2-layer character LSTM as wide as makes the quick GPT's parameter count (0.83 M),
# trained by the same loop on the same data and batches (README: LSTM vs GPT)
QUICK_LSTM = dataclasses.replace(QUICK, arch="lstm", n_layer=2, n_embd=224)
# day 25's encoder: the quick model's block with bidirectional attention, trained to fill 15% masked tokens
QUICK_MLM = dataclasses.replace(QUICK, objective="mlm")
PRESETS = {
    "quick": QUICK,
    "quick-lstm": QUICK_LSTM,
    "quick-mlm": QUICK_MLM,
    "tiny": TINY,
    "shakespeare-char-cpu": SHAKESPEARE_CHAR_CPU,
    "shakespeare-char": SHAKESPEARE_CHAR,
}


def config_from_dict(values: dict) -> TrainConfig:
    """Rebuild a TrainConfig from a run's config.json (strings back to paths; --data stays a string: a Hub id)."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    kwargs = {key: value for key, value in values.items() if key in fields}
    if kwargs.get("out") is not None:
        kwargs["out"] = Path(kwargs["out"])
    return TrainConfig(**kwargs)


def check_relations(cfg: TrainConfig) -> TrainConfig:
    """The rules between fields (each field's own rule is declared with it), checked before any folder exists."""
    if cfg.arch == "lstm" and cfg.parallel == "fsdp":
        raise UserError("--parallel fsdp shards the GPT's blocks: train --arch lstm with --parallel ddp")
    if cfg.arch == "lstm" and cfg.objective == "mlm":
        raise UserError("--objective mlm needs attention in both directions: use --arch llama or gpt2, not lstm")
    if cfg.arch != "lstm" and cfg.n_embd % cfg.n_head:
        raise UserError(
            f"--n-head {cfg.n_head} does not divide --n-embd {cfg.n_embd}: each head gets n_embd / n_head dimensions"
        )
    if cfg.arch == "llama" and cfg.n_embd // cfg.n_head % 2:
        raise UserError(
            f"--arch llama rotates pairs of dimensions: n_embd / n_head = {cfg.n_embd // cfg.n_head} must be even"
        )
    if cfg.tokenizer == "bpe" and cfg.vocab_size < 257:
        raise UserError(f"--vocab-size {cfg.vocab_size}: a byte-level BPE needs at least 257 (256 bytes + 1 special)")
    return cfg


@dataclass
class CheckpointArgs:
    ckpt: Path | None = None
    """Run folder. Default: the newest run under --runs."""
    runs: Path = Path("runs")
    device: str = "auto"


@dataclass
class EvalArgs(CheckpointArgs):
    data: DataSource = None
    """A text file or Hub dataset id (as train --data takes them) to score, all of it.
    Default: the run's own validation split."""
    batch_size: Positive | None = None
    """Windows per forward pass. Unset: the run's training batch size, which reproduces train's val_loss exactly."""
    max_windows: Positive | None = None
    """Score at most N context windows, evenly spaced (default: every non-overlapping window)."""
    by_position: bool = False
    """Also the mean next-token loss at each position of the window (256 windows): how much the model gains from
    context (compare an LSTM with a GPT: benchmarks/lstm_vs_gpt.py draws it)."""
    prompt: str = "def __init__(self):\n    self."
    """Text whose attention attention.png draws (every head of the first and the last layer); at most the model's
    context in tokens. The default is Python, the quick preset's corpus."""
    pictures: Path | None = None
    """Folder for the eval pictures (unset: the run folder; nothing for the shipped weights)."""


@dataclass
class GenerateArgs(CheckpointArgs):
    prompt: str = "\n"
    """Text to continue: at most 100,000 characters, and fewer tokens than the model's context (else refused)."""
    max_new_tokens: Positive = 200
    temperature: NonNegativeFloat = 0.8
    """0 = greedy."""
    top_k: Positive | None = 200
    top_p: TopP | None = None
    """Nucleus sampling: keep the smallest set of tokens holding this much probability (e.g. 0.9)."""
    seed: int = 1337
    no_cache: bool = False
    """Recompute the whole context for every token instead of using the KV cache."""


@dataclass
class ExportArgs(CheckpointArgs):
    out: Path = Path("export")
    """Folder to write (a Hugging Face model folder with the tokenizer)."""
    format: Literal["hf"] = "hf"
    """hf: GPT2LMHeadModel (arch gpt2) or LlamaForCausalLM (arch llama) + tokenizer, loadable by transformers."""
    overwrite: bool = False
    """Replace an earlier export in --out (only a folder an export wrote; anything else is refused)."""
    push_to_hub: HubRepoId = None
    """Upload the finished export folder to this Hugging Face Hub model repo ("your-name/model-name"; needs `hf
    auth login`)."""


@dataclass
class DemoArgs(CheckpointArgs):
    host: str = "127.0.0.1"
    """Interface to serve on; 0.0.0.0 exposes the demo to the network."""
    port: Port = 7860
    """Port to serve on (the next free one if it is taken)."""
    share: bool = False
    """Also open a public gradio.live link (off unless asked: anyone with the link can use the demo)."""


@dataclass
class BenchArgs:
    preset: str = "quick"
    """Training preset whose model and batch shape are measured."""
    data: DataSource = None
    """Text file or Hub dataset id, as train --data takes them (default: the preset's own data)."""
    steps: Positive = 30
    """Timed training steps after warm-up."""
    warmup: NonNegative = 5
    """Untimed steps first (compilation, allocator warm-up)."""
    mixed_precision: Literal["no", "bf16", "fp16"] | None = None
    """Override the preset's precision."""
    compile: bool | None = None
    """Override the preset's torch.compile setting."""
    reuse_freed_memory: bool = True
    """See `train --help`: glibc keeps freed memory instead of unmapping it every step."""
    new_tokens: NonNegative = 256
    """Generation benchmark: tokens generated with and without the KV cache (0 = skip)."""
    device: str = "auto"
    peak_flops: PositiveFloat | None = None
    """Peak FLOP/s of one device for MFU. Unset: a table for known GPUs; on a CPU, a measured matmul."""
    profile: bool = False
    """Then profile training steps of the same preset under torch.profiler: a fresh short run of `train` (3 steps
    recorded after 2), written as a Chrome trace (trace.json) and the top operators by self time (top_ops.txt,
    top_ops.md). The timings above are taken without it."""
    profile_out: Path | None = None
    """Folder for the profile (default: runs/tinygpt-profile/<timestamp>; giving it turns --profile on; an earlier
    profile there is replaced, any other non-empty folder refused)."""
