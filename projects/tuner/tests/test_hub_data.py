"""`--data owner/name`: a Hub dataset in TRL's column names gives the rows a JSONL file gives; offline, one line."""

from __future__ import annotations

import dataclasses

import datasets
import pytest

from dlshared.cli import UserError
from dlshared.testing import assert_one_line_error
from tuner.cli import main
from tuner.config import PRESETS
from tuner.data import load_task_data, read_heldout_pairs


@pytest.fixture
def fake_hub(monkeypatch):
    """datasets.load_dataset answering from a dict of columns instead of the Hub; records what was asked."""
    asked, columns = [], {}

    def load_dataset(path, name=None, split=None):
        asked.append((path, name, split))
        return datasets.Dataset.from_dict(columns)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return asked, columns


def chat(*turns: str) -> list[dict[str, str]]:
    return [{"role": role, "content": text} for role, text in zip(("user", "assistant") * 3, turns, strict=False)]


def test_prompt_chosen_rejected_columns_are_split_into_train_and_heldout_pairs(fake_hub):
    asked, columns = fake_hub
    columns |= {
        "prompt": [f"Q{i}?" for i in range(20)],
        "chosen": [" Yes."] * 20,
        "rejected": [" No!"] * 20,
        "score_chosen": [9.0] * 20,  # TRL datasets carry more columns: left out
    }
    data = load_task_data(dataclasses.replace(PRESETS["tiny"], data="someone/pairs:train[:20]"))
    assert asked == [("someone/pairs", None, "train[:20]")] and data.source == "someone/pairs:train[:20]"
    assert len(data.train_pairs) == 18 and len(data.heldout_pairs) == 2  # 10% held out, as for a file
    assert data.train_pairs[0].keys() == {"prompt", "chosen", "rejected"}
    assert data.sft_rows[0] == {"prompt": data.train_pairs[0]["prompt"], "completion": " Yes."}  # SFT on chosen


def test_conversational_pairs_with_an_implicit_prompt_become_plain_text(fake_hub):
    # trl-lib/ultrafeedback_binarized's layout: chosen/rejected chats that share the user's turn, no prompt column
    _, columns = fake_hub
    columns |= {"chosen": [chat("Sky colour?", "Blue.")] * 2, "rejected": [chat("Sky colour?", "Green.")] * 2}
    pairs = read_heldout_pairs("someone/chats").heldout_pairs
    assert pairs[0] == {"prompt": "User: Sky colour?\nAssistant:", "chosen": " Blue.", "rejected": " Green."}


def test_sft_columns_give_messages_or_prompt_completion_rows(fake_hub):
    _, columns = fake_hub
    columns |= {"messages": [chat("Hi", "Hello!"), chat("2+2?", "4", "And 3+3?", "6")]}  # trl-lib/Capybara's
    rows = load_task_data(dataclasses.replace(PRESETS["tiny"], data="someone/chat")).sft_rows
    assert rows[1] == {"messages": chat("2+2?", "4", "And 3+3?", "6")}
    columns.clear()
    columns |= {"prompt": [chat("Hi")], "completion": [[{"role": "assistant", "content": "Hello!"}]]}
    rows = load_task_data(dataclasses.replace(PRESETS["tiny"], data="someone/chat")).sft_rows
    assert rows == [{"messages": chat("Hi", "Hello!")}]  # conversational prompt/completion: one chat
    columns.clear()
    columns |= {"prompt": ["The sky is"], "completion": [" blue."]}
    rows = load_task_data(dataclasses.replace(PRESETS["tiny"], data="someone/plain")).sft_rows
    assert rows == [{"prompt": "The sky is", "completion": " blue."}]


def test_other_columns_are_refused_naming_what_is_expected(fake_hub):
    _, columns = fake_hub
    columns |= {"text": ["plain text has no answer to tune on"]}
    with pytest.raises(UserError, match="expected the columns prompt/chosen/rejected, .*; it has text"):
        load_task_data(dataclasses.replace(PRESETS["tiny"], data="someone/corpus"))
    columns.clear()
    columns |= {"prompt": [chat("Hi")], "completion": [" Hello!"]}  # a chat prompt with a string answer
    with pytest.raises(UserError, match="someone/mixed:train, row 1: 'prompt' must be a string, got list"):
        load_task_data(dataclasses.replace(PRESETS["tiny"], data="someone/mixed"))
    columns.clear()
    columns |= {"prompt": ["Q"], "completion": [" A"]}
    with pytest.raises(UserError, match="eval needs"):  # eval scores preference pairs only
        read_heldout_pairs("someone/sft")


def test_offline_hub_id_and_mistyped_file_are_one_line_errors(tmp_path, capsys):
    # the real load_dataset under HF_HUB_OFFLINE=1 (dlshared.testing): refused at once, and the run folder is gone
    argv = ["train", "--preset", "tiny", "--out", str(tmp_path), "--data"]
    err = assert_one_line_error(main, [*argv, "nobody-here/no-pairs"], capsys)
    assert "neither a local path nor a hub dataset" in err.lower() and "OfflineModeIsEnabled" in err
    assert "run once with network" in err and "or pass a local JSONL file" in err
    assert not any((tmp_path / "tuner").glob("*"))
    err = assert_one_line_error(main, [*argv, "corpus/pairs.jsonl"], capsys)  # a file name: never looked up
    assert "corpus/pairs.jsonl: no such file" in err
