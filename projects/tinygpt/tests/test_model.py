"""The model and the samplers: shapes, initial loss, FLOPs formula, KV cache against full recompute."""

from __future__ import annotations

import math

import pytest
import torch

from tinygpt.generate import generate, sample_next
from tinygpt.model import GPT, GPTConfig, KVCache


def small(arch: str, **overrides) -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=50, block_size=64, n_layer=2, n_head=4, n_embd=32, arch=arch, **overrides)
    return GPT(cfg).eval()


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_shapes_and_initial_loss(arch):
    model = small(arch)
    idx, targets = torch.randint(50, (3, 20)), torch.randint(50, (3, 20))
    logits, loss = model(idx, targets)
    assert logits.shape == (3, 20, 50)
    # small initial weights give near-uniform predictions: the loss starts at ln(vocab)
    assert abs(loss.item() - math.log(50)) < 0.1
    assert model.lm_head.weight is model.tok_emb.weight


def test_parameter_count_and_flops_follow_nanogpt():
    model = small("gpt2")
    cfg = model.cfg
    C, L, V = cfg.n_embd, cfg.n_layer, cfg.vocab_size
    per_block = 2 * C + 3 * C * C + C * C + 4 * C * C + 4 * C * C  # 2 norm gains, qkv, proj, mlp up + down
    assert model.num_params() == V * C + L * per_block + C  # tied embedding + blocks + final norm
    assert model.num_params(non_embedding=False) == model.num_params() + cfg.block_size * C
    # nanoGPT estimate_mfu: 6N + 12 L H Q T
    assert model.flops_per_token() == 6 * model.num_params() + 12 * L * cfg.n_head * cfg.head_dim * cfg.block_size


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_cached_forward_matches_full_forward(arch):
    model = small(arch)
    idx = torch.randint(50, (2, 30))
    full, _ = model(idx)
    cache = KVCache(model.cfg, batch=2, max_len=64, device="cpu", dtype=torch.float32)
    parts = [model(idx[:, :10], cache=cache)[0], model(idx[:, 10:11], cache=cache)[0]]
    parts.append(model(idx[:, 11:30], cache=cache)[0])  # several new tokens after a filled cache: the mask path
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 30


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_cached_generation_equals_recompute_token_for_token(arch):
    model = small(arch)
    prompt = torch.randint(50, (2, 7))
    with_cache = torch.cat(list(generate(model, prompt, 50, temperature=0, use_cache=True)), dim=1)
    recompute = torch.cat(list(generate(model, prompt, 50, temperature=0, use_cache=False)), dim=1)
    assert with_cache.shape == (2, 50)
    assert torch.equal(with_cache, recompute)


def test_generation_runs_past_the_context_window():
    model = small("llama")
    tokens = list(generate(model, torch.zeros(1, 60, dtype=torch.long), 30, temperature=1.0))
    assert len(tokens) == 30


def test_forward_refuses_more_positions_than_the_context():
    with pytest.raises(ValueError, match="context length 64"):
        small("gpt2")(torch.zeros(1, 65, dtype=torch.long))


def test_samplers():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert sample_next(logits, temperature=0).item() == 0
    assert sample_next(logits, temperature=1.0, top_k=1).item() == 0
    g = torch.Generator().manual_seed(0)
    draws = {sample_next(logits, 1.0, top_p=0.7, generator=g).item() for _ in range(300)}
    assert draws == {0, 1}  # 0.5 + 0.3 reaches 0.7: the nucleus is the first two tokens
    draws = {sample_next(logits, 1.0, top_k=3, generator=g).item() for _ in range(300)}
    assert draws == {0, 1, 2}
    # the nucleus keeps at least one token however small top_p is
    assert {sample_next(logits, 1.0, top_p=1e-6, generator=g).item() for _ in range(20)} == {0}
