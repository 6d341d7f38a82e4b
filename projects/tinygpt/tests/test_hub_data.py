"""`--data owner/name`: a Hub dataset's text column feeds the same 90/10 split as a text file; offline, one line."""

from __future__ import annotations

import dataclasses

import datasets
import pytest

from dlshared.cli import UserError
from dlshared.testing import assert_one_line_error
from tinygpt.cli import main
from tinygpt.config import PRESETS
from tinygpt.data import load_data, read_text


@pytest.fixture
def fake_hub(monkeypatch):
    """datasets.load_dataset answering from a dict of columns instead of the Hub; records what was asked."""
    asked, columns = [], {}

    def load_dataset(path, name=None, split=None):
        asked.append((path, name, split))
        return datasets.Dataset.from_dict(columns)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return asked, columns


def test_text_column_rows_become_the_training_text(fake_hub):
    asked, columns = fake_hub
    lines = [f"line {i} of a corpus" for i in range(400)]
    columns |= {"id": list(range(400)), "text": lines}  # another column beside `text`: ignored
    cfg = dataclasses.replace(PRESETS["tiny"], data="someone/corpus:validation", max_chars=None)
    data = load_data(cfg)
    assert asked == [("someone/corpus", None, "validation")]
    text = "".join(line + "\n" for line in lines)  # each row ends in a newline
    assert len(data.train) + len(data.val) == len(text)  # char level: one token per character, split 90/10
    assert data.tokenizer.decode(data.val.tolist()) == text[int(len(text) * 0.9) :]
    assert data.source == "someone/corpus:validation (text column)"


def test_the_only_string_column_is_the_text_and_several_are_refused(fake_hub):
    _, columns = fake_hub
    columns |= {"story": ["Once upon a time.\n", "The end."], "n": [1, 2]}
    assert read_text("someone/stories") == ("Once upon a time.\nThe end.\n", "someone/stories:train (story column)")
    columns |= {"title": ["a", "b"]}  # two string columns, no `text`: which one is the text is not guessed
    with pytest.raises(UserError, match=r"no `text` column.*columns: story, n, title"):
        read_text("someone/stories")


def test_offline_hub_id_and_mistyped_file_are_one_line_errors(tmp_path, capsys):
    # the real load_dataset under HF_HUB_OFFLINE=1 (dlshared.testing): refused at once, and the run folder is gone
    argv = ["train", "--preset", "tiny", "--out", str(tmp_path), "--data"]
    err = assert_one_line_error(main, [*argv, "nobody-here/no-corpus"], capsys)
    assert "neither a local path nor a hub dataset" in err.lower() and "OfflineModeIsEnabled" in err
    assert "run once with network" in err and "or pass a local UTF-8 text file" in err
    assert not any((tmp_path / "tinygpt").glob("*"))
    err = assert_one_line_error(main, [*argv, "corpus/tiny.txt"], capsys)  # a file name: never looked up
    assert "--data corpus/tiny.txt: no such file" in err
