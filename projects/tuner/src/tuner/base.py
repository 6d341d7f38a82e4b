"""The base model: the embedded one (a character tokenizer + a small Llama pretrained here), or any HF
causal LM.

Stage `pretrain` (course day 28's starting point: "a pretrained base") trains every weight of a fresh
`LlamaForCausalLM` on raw arithmetic statements, so that the base *can* add before anyone asks it questions.
The notes record why this comes first: DPO on a base that is not competent at the task stays at chance.
The result is an ordinary Hugging Face folder (config.json, model.safetensors, tokenizer.json) that
`--base` (or AutoModelForCausalLM) loads like any Hub model.
"""

from __future__ import annotations

import math
import string
from pathlib import Path

import torch
from safetensors import SafetensorError

from dlshared.cli import UserError
from dlshared.monitor import RunLogger
from dlshared.training import Meter

from .config import TrainConfig
from .pictures import window_means
from .task import pretrain_corpus

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
CHARS = "\n" + string.printable[:95]  # newline + printable ASCII: digits, letters, punctuation, space


def build_tokenizer():
    """One token per character (digits stay digits: easy arithmetic), plus <pad> <eos> <unk> as ids 0-2."""
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as Backend
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([PAD, EOS, UNK, *CHARS])}
    backend = Backend(models.WordLevel(vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character
    backend.decoder = decoders.Fuse()  # join characters back with nothing in between
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (PAD, EOS, UNK)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=PAD, eos_token=EOS, unk_token=UNK)


def build_model(tokenizer, n_layer: int, n_head: int, hidden: int, intermediate: int, max_positions: int):
    """A fresh `LlamaForCausalLM` of that size over the tokenizer's vocabulary (tied embeddings: the LM head
    reuses the token embedding). Its initial weights come from torch's global RNG: seed it first."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,  # SwiGLU width
        num_hidden_layers=n_layer,
        num_attention_heads=n_head,
        num_key_value_heads=n_head,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config)


def prepare_tokenizer(tokenizer):
    """Make any causal-LM tokenizer usable by trl: it needs an eos (the end of an answer) and a pad token.

    A tokenizer without eos (e.g. a tinygpt character export) ends answers with a newline instead, when a
    newline is a single token; padding falls back to eos (trl's own default) or unk.
    """
    if tokenizer.eos_token is None:
        ids = tokenizer("\n", add_special_tokens=False)["input_ids"]
        if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
            raise UserError("the base tokenizer has no eos token and no single newline token to end answers with")
        tokenizer.eos_token = "\n"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer


def quiet_weight_loading() -> None:
    """No "Loading weights" bar from transformers: a command loads the base several times (each stage, each model
    evaluated), in milliseconds for these sizes, and an error must stay one line. Download bars are kept."""
    from transformers.utils import logging

    def hook(factory, args, kwargs):
        quiet = kwargs.get("desc") == "Loading weights"
        return factory(*args, **{**kwargs, "disable": True}) if quiet else factory(*args, **kwargs)

    logging.set_tqdm_hook(hook)


def load_base(base: str | Path, dtype=torch.float32, quantization_config=None):
    """(model, tokenizer) from a Hub id or folder; a missing or offline model is a one-line UserError."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_weight_loading()
    kwargs = {"dtype": dtype}
    if quantization_config is not None:
        kwargs.update(quantization_config=quantization_config, device_map={"": 0})
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(base))
        model = AutoModelForCausalLM.from_pretrained(str(base), **kwargs)
    except OSError as err:  # not a folder, not on the Hub, or offline
        raise UserError(f"cannot load base model {str(base)!r}: {_first_line(err)}") from None
    except (ValueError, KeyError, TypeError) as err:  # e.g. a folder that is not a causal LM, a garbled file
        raise UserError(f"cannot load base model {str(base)!r} as a causal LM: {_first_line(err)}") from None
    except (SafetensorError, RuntimeError) as err:  # truncated weights, or weights of another size
        weights = Path(base) / "model.safetensors"
        where = weights if weights.is_file() else base
        raise UserError(f"cannot load base model: {where}: {_first_line(err)}; copy the base again") from None
    prepare_tokenizer(tokenizer)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _first_line(err: BaseException) -> str:
    """Library messages can run over many lines; a user error is one."""
    lines = str(err).strip().splitlines()
    return lines[0][:300] if lines else type(err).__name__


def windows(ids: torch.Tensor, batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """(batch, length) random windows of one long token stream (documents packed back to back)."""
    starts = torch.randint(len(ids) - length, (batch,), generator=generator)
    return torch.stack([ids[s : s + length] for s in starts.tolist()])


def corpus_ids(tokenizer, train_pairs, cfg: TrainConfig) -> torch.Tensor:
    """The pretraining corpus (task.py) as one token stream, each statement ended by <eos>: the boundary the
    base later sees before a question."""
    docs = pretrain_corpus(train_pairs, cfg.pretrain_docs, cfg.data_seed)
    ids = torch.tensor(tokenizer(EOS.join(docs) + EOS, add_special_tokens=False)["input_ids"])
    if len(ids) <= cfg.max_positions:
        raise UserError(f"pretrain corpus of {len(ids)} tokens is shorter than one window ({cfg.max_positions})")
    return ids


def build_optimizer(model, lr: float, steps: int):
    """AdamW (no weight decay on norm gains) and a cosine schedule after a 5% warm-up."""
    from transformers import get_cosine_schedule_with_warmup

    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99))
    return optimizer, get_cosine_schedule_with_warmup(optimizer, max(1, steps // 20), steps)


def pretrain(cfg: TrainConfig, train_pairs, out_dir: Path, logs: Path) -> dict:
    """Train the embedded Llama from scratch on the arithmetic corpus; save it to `out_dir` (an HF folder)."""
    # --- set-up: tokenizer, model, corpus, optimiser; TensorBoard under `logs` ---
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = build_tokenizer()
    torch.manual_seed(cfg.seed)  # the initial weights
    model = build_model(tokenizer, cfg.n_layer, cfg.n_head, cfg.hidden, cfg.intermediate, cfg.max_positions)
    model = model.to(device).train()
    ids = corpus_ids(tokenizer, train_pairs, cfg)
    optimizer, schedule = build_optimizer(model, cfg.pretrain_lr, cfg.pretrain_steps)
    generator = torch.Generator().manual_seed(cfg.seed)  # the order of the windows
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
    log = RunLogger(logs)
    meter = Meter(log, cfg.pretrain_steps, 0, every=20, unit="tokens", warmup=3, show=cfg.progress)

    # --- the loop: next-token prediction on random windows of the corpus ---
    losses = []
    for step in range(cfg.pretrain_steps):
        x = windows(ids, cfg.pretrain_batch, cfg.max_positions, generator).to(device)  # (B, T)
        with autocast:
            loss = model(input_ids=x, labels=x).loss  # the model shifts labels by one itself
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        meter.step(step, x.numel(), loss=losses[-1], lr=schedule.get_last_lr()[0])

    # --- finish: an ordinary Hugging Face folder, and the numbers ---
    meter.close()
    log.close()
    model.eval().save_pretrained(out_dir)  # config.json + model.safetensors
    tokenizer.save_pretrained(out_dir)
    tail = losses[-max(1, len(losses) // 10) :]  # the last 10% of steps: less noisy than the last step
    return {
        "pretrain_loss_first": round(losses[0], 4),
        "pretrain_loss_last": round(sum(tail) / len(tail), 4),
        "pretrain_tokens_per_s": round(meter.rate, 1),
        "pretrain_seconds": round(meter.seconds, 1),
        "base_params": sum(p.numel() for p in model.parameters()),
        "pretrain_perplexity": round(math.exp(sum(tail) / len(tail)), 3),
        "pretrain_history": window_means(losses, every=20, key="pretrain_loss"),  # the meter's interval; curves.png
    }
