"""The two other models of the course: the character LSTM (`--arch lstm`, day 21) and the masked-LM encoder
(`--objective mlm`, day 25). Each trains tiny, is scored by `eval`, and resumes exactly; the pieces that make them
what they are (BERT's masking, attention in both directions, the recurrent state) are checked against references."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dlshared.testing import assert_one_line_error
from tinygpt.artifacts import load_model
from tinygpt.cli import main
from tinygpt.data import MASK_RATE, mask_tokens
from tinygpt.evaluate import evaluate_loss, loss_by_position
from tinygpt.generate import generate
from tinygpt.lstm import CharLSTM
from tinygpt.model import GPT, GPTConfig, build_model
from tinygpt.train import train

from .conftest import tiny_config

VARIANTS = {"lstm": {"arch": "lstm"}, "mlm": {"objective": "mlm"}}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant_run(request, tmp_path_factory) -> tuple[str, dict]:
    out = tmp_path_factory.mktemp(request.param)
    return request.param, train(tiny_config(out, name="whole", sample_tokens=0, **VARIANTS[request.param]))


def test_each_variant_trains_loads_and_eval_reproduces_its_loss(variant_run, capsys):
    kind, metrics = variant_run
    first, last = metrics["history"][0], metrics["history"][-1]
    assert last["iter"] == 40 and last["val_loss_estimate"] < first["val_loss_estimate"]
    loaded = load_model(Path(metrics["run_dir"]), "cpu")
    assert isinstance(loaded.model, CharLSTM if kind == "lstm" else GPT)
    # mlm: the model has one more id than the tokenizer, the mask token
    assert loaded.model.cfg.vocab_size == loaded.tokenizer.vocab_size + (kind == "mlm")
    main(["eval", "--ckpt", metrics["run_dir"]])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["loss"] == metrics["val_loss"]  # the masked positions are the same on every call
    assert printed["objective"] == ("mlm" if kind == "mlm" else "clm")
    # attention.png in the run folder: the encoder's attention, both directions; an LSTM has none to draw
    drawn = Path(metrics["run_dir"]) / "attention.png"
    assert printed["pictures"] == ({} if kind == "lstm" else {"attention": str(drawn)})
    assert (Path(metrics["run_dir"]) / "curves.png").is_file()


def test_each_variant_resumes_exactly_where_it_stopped(variant_run, tmp_path):
    kind, whole = variant_run
    cfg = tiny_config(tmp_path, name="halves", sample_tokens=0, **VARIANTS[kind])
    train(dataclasses.replace(cfg, max_iters=20, lr_decay_iters=40))
    resumed = train(dataclasses.replace(cfg, resume=True))
    # mlm: the masking draws come from the batch stream's generator, so they resume with it
    a = load_file(str(Path(whole["run_dir"]) / "model.safetensors"))
    b = load_file(str(tmp_path / "tinygpt" / "halves" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6, msg=name)
    assert resumed["val_loss"] == whole["val_loss"]


def test_masking_follows_bert_15_percent_then_80_10_10():
    ids = torch.randint(100, (400, 500))
    generator = torch.Generator().manual_seed(0)
    inputs, targets = mask_tokens(ids, 100, generator)
    chosen = targets != -1
    assert torch.equal(targets[chosen], ids[chosen])  # the originals are the targets, only where chosen
    assert torch.equal(inputs[~chosen], ids[~chosen])  # the rest of the window is left alone
    assert chosen.float().mean().item() == pytest.approx(MASK_RATE, abs=0.003)
    masked = (inputs == 100) & chosen
    kept = (inputs == ids) & chosen  # includes the ~1% of random draws that hit the original token
    assert masked.sum() / chosen.sum() == pytest.approx(0.8, abs=0.01)
    assert kept.sum() / chosen.sum() == pytest.approx(0.1 + 0.1 / 100, abs=0.01)
    assert not (inputs[~chosen] == 100).any() and inputs.max() <= 100
    again = mask_tokens(ids, 100, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], inputs) and torch.equal(again[1], targets)  # seeded: evaluation is repeatable


def test_an_encoder_reads_both_sides_and_a_decoder_only_the_left():
    torch.manual_seed(0)
    idx = torch.randint(30, (1, 12))
    later = idx.clone()
    later[0, 8] = (idx[0, 8] + 1) % 30  # change one token in the second half
    for objective, sees_the_future in (("clm", False), ("mlm", True)):
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=31, block_size=16, n_layer=2, n_head=2, n_embd=16, objective=objective))
        before, after = model.eval()(idx)[0], model(later)[0]
        changed = (before - after).abs().amax(dim=-1)[0]  # (T,): how much each position's logits moved
        assert bool((changed[:8] > 1e-6).any()) == sees_the_future, objective
        assert bool((changed[8:] > 1e-6).all())


def test_the_lstm_matches_a_hand_written_cell_and_its_cache_matches_the_full_pass():
    torch.manual_seed(0)
    model = build_model(GPTConfig(vocab_size=20, block_size=16, n_layer=1, n_embd=8, arch="lstm")).eval()
    idx = torch.randint(20, (2, 10))
    logits, _ = model(idx)
    # the recurrence by hand: gates i, f, g, o from x_t and h_{t-1}; c_t = f*c + i*g; h_t = o*tanh(c_t)
    lstm = model.lstm
    h = c = torch.zeros(2, 8)
    for t in range(10):
        x = model.tok_emb(idx[:, t])
        gates = x @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + h @ lstm.weight_hh_l0.T + lstm.bias_hh_l0
        i, f, g, o = gates.chunk(4, dim=-1)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        h = o.sigmoid() * c.tanh()
        torch.testing.assert_close(model.lm_head(h), logits[:, t], rtol=1e-5, atol=1e-5)
    # generation with the recurrent state gives the tokens that recomputing the window gives
    prompt = idx[:1, :4]
    cached = torch.cat(list(generate(model, prompt, 8, temperature=0.0, use_cache=True)), dim=1)
    recomputed = torch.cat(list(generate(model, prompt, 8, temperature=0.0, use_cache=False)), dim=1)
    assert torch.equal(cached, recomputed)


@pytest.mark.parametrize("arch", ["llama", "lstm"])
def test_loss_by_position_averages_to_the_loss_of_the_same_windows(arch):
    torch.manual_seed(0)
    model = build_model(GPTConfig(vocab_size=20, block_size=16, n_layer=1, n_head=2, n_embd=8, arch=arch))
    ids = torch.randint(20, (2000,), generator=torch.Generator().manual_seed(0))
    by_position = loss_by_position(model, ids, 16, batch_size=8, max_windows=40)
    assert len(by_position) == 16
    mean = evaluate_loss(model, ids, 16, batch_size=8, max_windows=40)
    assert sum(by_position) / 16 == pytest.approx(mean, rel=1e-5)


def test_what_each_variant_cannot_do_is_refused_in_one_line(variant_run, tmp_path, capsys):
    kind, metrics = variant_run
    if kind == "mlm":
        err = assert_one_line_error(main, ["generate", "--ckpt", metrics["run_dir"], "--prompt", "def "], capsys)
        assert "--objective mlm" in err and "tinygpt eval" in err
        err = assert_one_line_error(main, ["eval", "--ckpt", metrics["run_dir"], "--by-position"], capsys)
        assert "masked tokens" in err
    else:
        err = assert_one_line_error(
            main, ["export", "--ckpt", metrics["run_dir"], "--out", str(tmp_path / "x")], capsys
        )
        assert "LSTM" in err and not (tmp_path / "x").exists()
    err = assert_one_line_error(
        main, ["train", "--preset", "tiny", "--arch", "lstm", "--objective", "mlm", "--out", str(tmp_path)], capsys
    )
    assert "needs attention in both directions" in err and not (tmp_path / "tinygpt").exists()
