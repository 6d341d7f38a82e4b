"""The embedded corpus, the 90/10 split and the batch stream."""

from __future__ import annotations

import dataclasses

import torch

from tinygpt.config import PRESETS
from tinygpt.data import Batches, load_data, stdlib_corpus


def test_the_embedded_corpus_is_deterministic_and_sizeable():
    text = stdlib_corpus()
    assert text == stdlib_corpus()
    assert len(text) > 1_000_000 and "# file: argparse\n" in text and "def " in text


def test_split_is_first_90_percent_train_last_10_percent_validation(tmp_path):
    text = "".join(chr(ord("a") + i % 26) for i in range(10_000))
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    cfg = dataclasses.replace(PRESETS["tiny"], data=tmp_path / "t.txt", max_chars=None)
    data = load_data(cfg)
    assert len(data.train) == 9_000 and len(data.val) == 1_000  # char level: one token per character
    assert data.tokenizer.decode(data.val[:5].tolist()) == text[9_000:9_005]


def test_batches_are_shifted_windows_reproducible_and_resumable():
    ids = torch.arange(1000, dtype=torch.int32)
    batches = Batches(ids, block_size=16, batch_size=4, seed=3, device=torch.device("cpu"))
    x, y = next(batches)
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.long
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y[:, -1], x[:, -1] + 1)
    state = batches.state()
    after = [next(batches)[0] for _ in range(3)]
    again = Batches(ids, 16, 4, seed=99, device=torch.device("cpu"))
    again.load_state(state)
    assert all(torch.equal(a, b) for a, b in zip(after, [next(again)[0] for _ in range(3)], strict=True))
    fresh = Batches(ids, 16, 4, seed=3, device=torch.device("cpu"))
    assert torch.equal(next(fresh)[0], x)
