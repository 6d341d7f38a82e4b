"""A character LSTM language model: the recurrent baseline of course day 21, trained by the same loop as the GPT.

`--arch lstm` builds this instead of the Transformer; data, loss, schedule, checkpoints, `eval` and `generate` are
the same, so the README compares the two at equal parameters and equal wall time. What differs is how context
flows: attention reads every earlier position directly; the LSTM squeezes them into a state (h, c) of n_embd
numbers per layer, updated one token at a time, and training backpropagates through the window's T steps only
(truncated BPTT: every window starts from a zero state).

The recurrence itself is `nn.LSTM` (oneDNN / cuDNN kernels); the gates are written out in the day-21 lesson.
Shapes: B batch, T tokens, C = n_embd (embedding width = hidden size, so the output head can share the embedding).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

if TYPE_CHECKING:
    from .model import GPTConfig


class LSTMState:
    """The recurrent "cache" for generation: (h, c) after the tokens seen so far, each (n_layer, B, C)."""

    def __init__(self):
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None
        self.length = 0  # tokens consumed, as KVCache.length: generation refills the window at block_size


class CharLSTM(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        C = cfg.n_embd
        self.tok_emb = nn.Embedding(cfg.vocab_size, C)
        self.drop = nn.Dropout(cfg.dropout)
        self.lstm = nn.LSTM(
            C, C, num_layers=cfg.n_layer, batch_first=True, dropout=cfg.dropout if cfg.n_layer > 1 else 0.0
        )
        self.lm_head = nn.Linear(C, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # weight tying, as in the GPT
        # the embedding keeps PyTorch's N(0, 1): inputs of unit scale, as char-rnn's one-hot vectors. The GPT's 0.02
        # (GPT-2's init, for a residual stream behind LayerNorm) starves the gates: val loss after 300 quick-lstm
        # steps was 2.93 with std 0.02, 2.30 with 1/sqrt(C), 1.80 with 4/sqrt(C), 1.72 with 1 (one seed each)
        for name, p in self.lstm.named_parameters():
            if name.startswith("bias"):  # gates are ordered input, forget, cell, output
                nn.init.zeros_(p)
                if name.startswith("bias_ih"):
                    p.data[C : 2 * C] = 1.0  # forget-gate bias 1: remember by default (Jozefowicz et al., 2015)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: LSTMState | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) -> logits (B, T, vocab), and the mean cross-entropy when targets (B, T) are given.

        With a cache, the recurrence starts from its state (the tokens before idx) and leaves the new one there."""
        B, T = idx.shape
        past = cache.length if cache is not None else 0
        if past + T > self.cfg.block_size:  # the LSTM could read on; the limit keeps its contract equal to the GPT's
            raise ValueError(f"{past + T} positions exceed the context length {self.cfg.block_size}")
        x = self.drop(self.tok_emb(idx))  # (B, T, C)
        h, state = self.lstm(x, cache.state if cache is not None else None)  # h: (B, T, C), the top layer's states
        if cache is not None:
            cache.state, cache.length = state, past + T
        logits = self.lm_head(self.drop(h))  # (B, T, vocab)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def new_cache(self, batch: int, max_len: int, device, dtype) -> LSTMState:
        return LSTMState()

    def num_params(self, non_embedding: bool = True) -> int:
        """Every parameter (there is no position table; the tied matrix counts once)."""
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, context: int | None = None, training: bool = True) -> float:
        """2 FLOPs per weight per token (the gates' and the head's matmuls); training costs three times that."""
        forward = 2 * self.num_params()
        return 3 * forward if training else forward
