"""The synthetic task: held-out pairs never leak into training text, the data has the promised mix, the grader
checks the two parts of the metric apart, and the embedded tokenizer round-trips."""

from __future__ import annotations

import re

import pytest

from tuner import task
from tuner.base import build_tokenizer

SPEC = task.TaskSpec(max_number=30, heldout_fraction=0.2, format_fractions=(0.8, 0.2, 0.2, 0.2), wrong_fraction=0.3)


def numbers(text: str) -> tuple[int, int]:
    """The two operands of a statement or question ("c = a + b" names the sum first)."""
    found = [int(n) for n in re.findall(r"\d+", text)]
    a, b = found[1:3] if re.match(r"\d+ =", text) else found[:2]
    return a, b


def test_heldout_pairs_are_held_out_in_both_orders_and_never_trained_on():
    train, heldout = task.split_pairs(SPEC)
    assert set(train).isdisjoint(heldout) and len(train) + len(heldout) == 31 * 31
    assert all((b, a) in set(heldout) for a, b in heldout)
    texts = task.pretrain_corpus(train, 500, 0) + [r["prompt"] for r in task.sft_rows(train, 300, SPEC, 0)]
    texts += [r["prompt"] for r in task.dpo_pairs(train, 300, SPEC, 0)]
    assert all(numbers(t) not in set(heldout) for t in texts)
    assert task.split_pairs(SPEC) == (train, heldout)  # deterministic


def test_the_corpus_holds_sums_in_many_dialogues_but_never_the_chat_template_or_the_format():
    train, _ = task.split_pairs(SPEC)
    corpus = task.pretrain_corpus(train, 2000, 0)
    for text in corpus:
        found = [int(n) for n in re.findall(r"\d+", text)]
        assert sum(found) == 2 * max(found), text  # a + b = c, in whatever order the statement names them
    askers = {t.split(":")[0] for t in corpus if "\n" in t}
    assert askers == {asker for asker, _ in task.SPEAKERS}
    replies = [t.split("\n")[1].split(": ", 1)[1] for t in corpus if "\n" in t]
    worded = [r for r in replies if not r.isdigit()]  # "That makes 68.": the sum after words, as after a format
    assert 0.3 < len(worded) / len(replies) < 0.8 and {r.split()[0] for r in worded} == {"It", "That", "I", "The", "So"}
    assert not any(word in t for t in corpus for word in ("User", "Assistant", "The answer is"))


def test_sft_answers_are_right_but_only_some_are_formatted():
    train, _ = task.split_pairs(SPEC)
    rows = task.sft_rows(train, 1000, SPEC, 0)
    grades = [task.grade(r["completion"], sum(numbers(r["prompt"]))) for r in rows]
    assert all(correct for correct, _ in grades)
    assert 0.3 < sum(formatted for _, formatted in grades) / len(rows) < 0.4  # (0.8 + 3 * 0.2) / 4 = 0.35
    first = [f for r, (_, f) in zip(rows, grades, strict=True) if "What is" in r["prompt"] and "plus" in r["prompt"]]
    assert 0.7 < sum(first) / len(first) < 0.9  # the phrasing whose answers mostly follow the format
    assert rows[0]["prompt"].startswith("User: ") and rows[0]["prompt"].endswith("\nAssistant:")


def test_dpo_pairs_choose_the_right_formatted_answer():
    train, _ = task.split_pairs(SPEC)
    pairs = task.dpo_pairs(train, 1000, SPEC, 0)
    wrong = 0
    for pair in pairs:
        expected = sum(numbers(pair["prompt"]))
        assert task.grade(pair["chosen"], expected) == (True, True)
        correct, formatted = task.grade(pair["rejected"], expected)
        assert not formatted
        wrong += not correct
    assert 0.25 < wrong / len(pairs) < 0.35


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (" The answer is 68.", (True, True)),
        ("The answer is 67.", (False, True)),
        (" 68", (True, False)),
        ("68 is the answer", (True, False)),
        ("The answer is 68", (True, False)),
        ("", (False, False)),
    ],
)
def test_grade(answer, expected):
    assert task.grade(answer, 68) == expected


def test_the_character_tokenizer_round_trips_and_knows_eos():
    tok = build_tokenizer()
    text = "User: What is 23 plus 45?\nAssistant: The answer is 68."
    ids = tok(text + tok.eos_token, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text) + 1 and ids[-1] == tok.eos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.pad_token_id == 0 and tok.eos_token_id == 1
