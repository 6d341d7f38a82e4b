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
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from dlshared.cli import UserError
from dlshared.monitor import RunLogger, Throughput

from .config import TrainConfig
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


def build_model(cfg: TrainConfig, tokenizer):
    """A fresh Llama sized by the config (tied embeddings: the LM head reuses the token embedding)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden, intermediate_size=cfg.intermediate,
        num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head, num_key_value_heads=cfg.n_head,
        max_position_embeddings=cfg.max_positions, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )  # fmt: skip
    torch.manual_seed(cfg.seed)
    return LlamaForCausalLM(config)


def prepare_tokenizer(tokenizer):
    """Make any causal-LM tokenizer usable by trl: it needs an eos (the end of an answer) and a pad token.

    A tokenizer without eos (e.g. a tinygpt character export) ends answers with a newline instead, when a
    newline is a single token; padding falls back to eos (trl's own default) or unk.
    """
    if tokenizer.eos_token is None:
        ids = tokenizer("\n", add_special_tokens=False)["input_ids"]
        if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
            raise UserError(
                "the base tokenizer has no eos token and no single newline token to end answers with"
            )
        tokenizer.eos_token = "\n"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer


def load_base(base: str | Path, dtype=torch.float32, quantization_config=None):
    """(model, tokenizer) from a Hub id or folder; a missing or offline model is a one-line UserError."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"dtype": dtype}
    if quantization_config is not None:
        kwargs.update(quantization_config=quantization_config, device_map={"": 0})
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(base))
        model = AutoModelForCausalLM.from_pretrained(str(base), **kwargs)
    except OSError as err:  # not a folder, not on the Hub, or offline
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot load base model {str(base)!r}: {first}") from None
    except ValueError as err:  # e.g. a folder that is not a causal LM
        raise UserError(f"cannot load base model {str(base)!r} as a causal LM: {err}") from None
    prepare_tokenizer(tokenizer)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def windows(ids: torch.Tensor, batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """(batch, length) random windows of one long token stream (documents packed back to back)."""
    starts = torch.randint(len(ids) - length, (batch,), generator=generator)
    return torch.stack([ids[s : s + length] for s in starts.tolist()])


def pretrain(cfg: TrainConfig, train_pairs, out_dir: Path, logger: RunLogger | None = None) -> dict:
    """Train the embedded Llama from scratch on the arithmetic corpus; save it to `out_dir` (an HF folder)."""
    from transformers import get_cosine_schedule_with_warmup

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = build_tokenizer()
    model = build_model(cfg, tokenizer).to(device).train()
    docs = pretrain_corpus(train_pairs, cfg.pretrain_docs, cfg.seed)
    ids = torch.tensor(tokenizer(EOS.join(docs) + EOS, add_special_tokens=False)["input_ids"])
    if len(ids) <= cfg.max_positions:
        raise UserError(
            f"pretrain corpus of {len(ids)} tokens is shorter than one window ({cfg.max_positions})"
        )
    decay = [p for p in model.parameters() if p.dim() >= 2]  # no weight decay on norm gains
    rest = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
        lr=cfg.pretrain_lr, betas=(0.9, 0.99),
    )  # fmt: skip
    warmup = max(1, cfg.pretrain_steps // 20)
    schedule = get_cosine_schedule_with_warmup(optimizer, warmup, cfg.pretrain_steps)
    generator = torch.Generator().manual_seed(cfg.seed)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
    meter, losses, started = Throughput(warmup=3), [], time.perf_counter()
    bar = tqdm(range(cfg.pretrain_steps), desc="pretrain", disable=not cfg.progress)
    for step in bar:
        x = windows(ids, cfg.pretrain_batch, cfg.max_positions, generator).to(device)
        with autocast:
            loss = model(input_ids=x, labels=x).loss  # the model shifts labels by one itself
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        meter.update(x.numel())
        losses.append(loss.item())
        if logger is not None and (step % 20 == 0 or step == cfg.pretrain_steps - 1):
            logger.scalars({"pretrain/loss": losses[-1], "pretrain/lr": schedule.get_last_lr()[0],
                            "pretrain/tokens_per_s": meter.rate}, step)  # fmt: skip
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)  # config.json + model.safetensors
    tokenizer.save_pretrained(out_dir)
    tail = losses[-max(1, len(losses) // 10) :]
    return {
        "pretrain_loss_first": round(losses[0], 4),
        "pretrain_loss_last": round(sum(tail) / len(tail), 4),
        "pretrain_tokens_per_s": round(meter.rate, 1),
        "pretrain_seconds": round(time.perf_counter() - started, 1),
        "base_params": sum(p.numel() for p in model.parameters()),
        "pretrain_perplexity": round(math.exp(sum(tail) / len(tail)), 3),
    }
