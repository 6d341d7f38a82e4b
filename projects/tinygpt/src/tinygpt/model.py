"""A decoder-only Transformer, written out: the lesson of course days 24-26.

Two flavours share one code path, chosen by `GPTConfig.arch`:
  gpt2   learned position embeddings, LayerNorm, GELU MLP            (GPT-2 / nanoGPT; exports to GPT2LMHeadModel)
  llama  rotary position embeddings (RoPE), RMSNorm, SwiGLU MLP      (Llama; exports to LlamaForCausalLM)
(`lstm` builds the recurrent baseline of day 21 instead: lstm.py, through `build_model`.)
Two objectives: `clm` predicts the next token under causal attention (a decoder, GPT); `mlm` predicts masked
tokens with attention in both directions (an encoder, BERT: course day 25; the masking is data.mask_tokens).
Both: pre-norm residual blocks, attention through `F.scaled_dot_product_attention` (flash/memory-efficient
kernels where the device has them), the output projection tied to the token embedding, and a KV cache for
generation. On CUDA, llama's RMSNorm runs as the fused Triton kernel of kernels.py (course day 34).
Shapes: B batch, T new tokens, S tokens attended to (cached + new), C width, H heads, D = C / H.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from .lstm import CharLSTM

if TYPE_CHECKING:
    from .config import TrainConfig


@dataclass
class GPTConfig:
    vocab_size: int = 65
    block_size: int = 256
    """Context length: the most tokens the model attends to."""
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.0
    bias: bool = False
    """Biases in Linear layers and LayerNorm (GPT-2 has them; nanoGPT and Llama drop them)."""
    arch: Literal["gpt2", "llama", "lstm"] = "gpt2"
    """gpt2: learned positions + LayerNorm + GELU MLP. llama: rotary positions + RMSNorm + SwiGLU MLP.
    lstm: a recurrent model of n_layer LSTM layers of width n_embd instead (lstm.py; n_head unused)."""
    objective: Literal["clm", "mlm"] = "clm"
    """clm: next token, causal attention. mlm: masked tokens, bidirectional; the last id is the mask token."""
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    triton_kernels: bool = True
    """llama on CUDA: RMSNorm as the fused Triton kernel of kernels.py. How the norm runs, not what it computes:
    the weights, their names and the exports are the same either way."""

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def causal(self) -> bool:
        return self.objective == "clm"

    @property
    def mask_id(self) -> int:
        """mlm: the id of the mask token, one past the tokenizer's ids (model_config adds it)."""
        return self.vocab_size - 1

    @property
    def mlp_hidden(self) -> int:
        if self.arch == "gpt2":
            return 4 * self.n_embd
        # SwiGLU has three matrices instead of two: 2/3 of 4C keeps the parameter count of a GELU MLP
        return 16 * math.ceil(8 * self.n_embd / 3 / 16)


def model_config(cfg: TrainConfig, vocab_size: int) -> GPTConfig:
    """The model's part of a training config, with the vocabulary size its tokenizer ended up with
    (plus the mask token's id for the mlm objective)."""
    return GPTConfig(
        vocab_size=vocab_size + (cfg.objective == "mlm"),
        block_size=cfg.block_size,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        n_embd=cfg.n_embd,
        dropout=cfg.dropout,
        bias=cfg.bias,
        arch=cfg.arch,
        objective=cfg.objective,
        triton_kernels=cfg.triton_kernels,
    )


class KVCache:
    """Keys and values of every layer for the tokens seen so far, preallocated up to `max_len` positions."""

    def __init__(self, cfg: GPTConfig, batch: int, max_len: int, device, dtype):
        shape = (cfg.n_layer, batch, cfg.n_head, max_len, cfg.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0  # positions filled; advanced by GPT.forward once every layer has written

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.length + k.size(2)
        if end > self.k.size(3):
            raise ValueError(f"KV cache holds {self.k.size(3)} positions; {end} requested")
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]  # (B, H, S, D)


def rope_tables(cfg: GPTConfig, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of position x frequency, (T, D), in the half-split layout Llama uses."""
    inv_freq = 1.0 / cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, device=positions.device) / cfg.head_dim)
    angles = positions.float()[:, None] * inv_freq[None, :]  # (T, D/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, D): pair i with i + D/2
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each (x_i, x_{i+D/2}) pair of x (B, H, T, D) by its position's angle."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.cfg, self.layer = cfg, layer
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)  # q, k, v in one matmul
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, rope=None, cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.shape
        H, D = self.cfg.n_head, self.cfg.head_dim
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.update(self.layer, k, v)  # (B, H, S, D), S = past + T
        if not self.cfg.causal:  # an encoder (mlm): every token sees every token of its window
            mask, causal = None, False
        elif past == 0 or T == 1:  # plain causal (prefill), or one new token that may see everything before it
            mask, causal = None, past == 0
        else:  # T new tokens after a filled cache: token i sees cached tokens and new tokens up to itself
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            causal = False
        dropout = self.cfg.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, dropout_p=dropout)  # (B, H, T, D)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.swiglu = cfg.arch == "llama"
        hidden = cfg.mlp_hidden
        self.up = nn.Linear(cfg.n_embd, hidden, bias=cfg.bias)
        self.gate = nn.Linear(cfg.n_embd, hidden, bias=cfg.bias) if self.swiglu else None
        self.down = nn.Linear(hidden, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.gate(x)) * self.up(x) if self.swiglu else F.gelu(self.up(x))  # (B, T, hidden)
        return self.dropout(self.down(h))


TRITON_DEVICES = ("cuda",)
"""Where kernels.py's kernels run (tests/test_kernels.py adds "cpu", where Triton's interpreter runs them)."""


class RMSNorm(nn.RMSNorm):
    """nn.RMSNorm (the same `weight` under the same name: checkpoints and exports do not change) that runs the
    fused Triton kernel when `fused` and the input is on a CUDA device; PyTorch's op elsewhere, and under
    torch.compile, whose Inductor writes a fused kernel of its own."""

    def __init__(self, width: int, eps: float, fused: bool):
        super().__init__(width, eps=eps)
        self.fused = fused and importlib.util.find_spec("triton") is not None  # Triton ships with Linux CUDA wheels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused and x.device.type in TRITON_DEVICES and not torch.compiler.is_compiling():
            from .kernels import rms_norm  # imported on first use: a CPU run never loads Triton

            return rms_norm(x, self.weight, self.eps)
        return super().forward(x)


def make_norm(cfg: GPTConfig) -> nn.Module:
    if cfg.arch == "llama":
        return RMSNorm(cfg.n_embd, eps=cfg.norm_eps, fused=cfg.triton_kernels)
    return nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps, bias=cfg.bias)


class Block(nn.Module):
    """Pre-norm: x + attn(norm(x)), then x + mlp(norm(x)); the residual stream itself is never normalised."""

    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.norm1, self.attn = make_norm(cfg), CausalSelfAttention(cfg, layer)
        self.norm2, self.mlp = make_norm(cfg), MLP(cfg)

    def forward(self, x, rope=None, cache=None):
        x = x + self.attn(self.norm1(x), rope, cache)
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        if cfg.n_embd % cfg.n_head:
            raise ValueError(f"n_embd {cfg.n_embd} is not divisible by n_head {cfg.n_head}")
        if cfg.arch == "llama" and cfg.head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head width, got {cfg.head_dim}")
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.arch == "gpt2" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm = make_norm(cfg)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # weight tying: one matrix reads and writes tokens
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale the projections into the residual stream
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) token ids -> logits (B, T, vocab), and the mean cross-entropy when targets (B, T) are given.

        With a cache, idx holds only the new tokens; their positions continue after the cached ones.
        """
        B, T = idx.shape
        past = cache.length if cache is not None else 0
        if past + T > self.cfg.block_size:
            raise ValueError(f"{past + T} positions exceed the context length {self.cfg.block_size}")
        positions = torch.arange(past, past + T, device=idx.device)
        x = self.tok_emb(idx)  # (B, T, C)
        rope = None
        if self.pos_emb is not None:
            x = x + self.pos_emb(positions)
        else:
            rope = rope_tables(self.cfg, positions)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, rope, cache)
        if cache is not None:
            cache.length += T
        logits = self.lm_head(self.norm(x))  # (B, T, vocab)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def new_cache(self, batch: int, max_len: int, device, dtype) -> KVCache:
        return KVCache(self.cfg, batch, max_len, device, dtype)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters; without the position table by default (as nanoGPT counts: the tied token matrix stays,
        since it does the output projection's work)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.pos_emb is not None:
            n -= self.pos_emb.weight.numel()
        return n

    def flops_per_token(self, context: int | None = None, training: bool = True) -> float:
        """Matmul FLOPs per token (PaLM appendix B, as nanoGPT's estimate_mfu): 2N per weight for the forward
        pass plus attention's 2 x 2 x L x T x C; a training step (forward + backward) costs three times that."""
        cfg = self.cfg
        T = context or cfg.block_size
        forward = 2 * self.num_params() + 4 * cfg.n_layer * T * cfg.n_embd
        return 3 * forward if training else forward


LanguageModel = GPT | CharLSTM
"""What every verb handles: same forward(idx, targets, cache), new_cache, num_params, flops_per_token."""


def build_model(cfg: GPTConfig) -> LanguageModel:
    """The model `cfg.arch` names: the Transformer above, or the LSTM of lstm.py."""
    return CharLSTM(cfg) if cfg.arch == "lstm" else GPT(cfg)
