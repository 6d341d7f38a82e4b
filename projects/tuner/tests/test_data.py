"""The JSONL readers: the preference and SFT formats, and one clear error per kind of bad line."""

from __future__ import annotations

import json

import pytest

from dlshared.cli import UserError
from tuner.data import read_preferences, read_sft

PAIR = {"prompt": "2+2=", "chosen": " 4", "rejected": " 5"}
MESSAGES = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]


def write(tmp_path, *lines: str, name: str = "data.jsonl"):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_read_preferences_keeps_the_three_fields_and_skips_blank_lines(tmp_path):
    extra = {**PAIR, "prompt": "Capital of France?", "source": "hand-written"}
    path = write(tmp_path, json.dumps(PAIR), "", "   ", json.dumps(extra))
    rows = read_preferences(path)
    assert rows == [PAIR, {"prompt": "Capital of France?", "chosen": " 4", "rejected": " 5"}]


def test_read_sft_reads_both_formats(tmp_path):
    completion = write(tmp_path, json.dumps({"prompt": "a", "completion": "b"}), name="c.jsonl")
    assert read_sft(completion) == [{"prompt": "a", "completion": "b"}]
    chat = write(tmp_path, json.dumps({"messages": MESSAGES, "id": 7}), name="m.jsonl")
    assert read_sft(chat) == [{"messages": MESSAGES}]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ('{"prompt": "a", "chosen": "b", "rejected": "c"', "line 2: invalid JSON"),
        ('["a", "b", "c"]', "line 2: expected a JSON object, got list"),
        ('{"prompt": "a", "chosen": "b"}', "line 2: missing key 'rejected'"),
        ('{"prompt": "a", "chosen": 4, "rejected": "c"}', "line 2: 'chosen' must be a string, got int"),
        (
            '{"prompt": null, "chosen": "b", "rejected": "c"}',
            "line 2: 'prompt' must be a string, got NoneType",
        ),
    ],
)
def test_a_bad_preference_line_names_the_file_the_line_and_why(tmp_path, line, why):
    path = write(tmp_path, json.dumps(PAIR), line)
    with pytest.raises(UserError) as err:
        read_preferences(path)
    assert str(err.value).startswith(f"{path}, {why}")


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("{'prompt': 'a'}", "line 1: invalid JSON"),
        ('{"prompt": "a"}', "line 1: missing key 'completion'"),
        ('{"prompt": "a", "completion": ["b"]}', "line 1: 'completion' must be a string, got list"),
        ('{"messages": []}', "line 1: 'messages' must be a non-empty list"),
        ('{"messages": "hi"}', "line 1: 'messages' must be a non-empty list"),
        ('{"messages": ["hi"]}', "line 1: messages[0] must be an object, got str"),
        ('{"messages": [{"role": "user"}]}', "line 1, messages[0]: missing key 'content'"),
        ('{"messages": [{"role": "user", "content": 1}]}', "line 1, messages[0]: 'content' must be a string"),
    ],
)
def test_a_bad_sft_line_names_the_file_the_line_and_why(tmp_path, line, why):
    path = write(tmp_path, line)
    with pytest.raises(UserError) as err:
        read_sft(path)
    assert str(err.value).startswith(f"{path}, {why}")


def test_sft_files_must_not_mix_formats(tmp_path):
    path = write(tmp_path, json.dumps({"prompt": "a", "completion": "b"}), json.dumps({"messages": MESSAGES}))
    with pytest.raises(UserError, match=r"line 2: a messages example, but line 1 is prompt/completion"):
        read_sft(path)


@pytest.mark.parametrize("reader", [read_preferences, read_sft])
def test_an_empty_file_is_an_error(tmp_path, reader):
    for lines in [(), ("", "  ")]:
        path = write(tmp_path, *lines)
        with pytest.raises(UserError, match="empty file"):
            reader(path)


@pytest.mark.parametrize("reader", [read_preferences, read_sft])
def test_missing_directory_and_binary_files_are_errors(tmp_path, reader):
    with pytest.raises(UserError, match="no such file"):
        reader(tmp_path / "missing.jsonl")
    with pytest.raises(UserError, match="is a directory"):
        reader(tmp_path)
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UserError, match="not UTF-8"):
        reader(tmp_path / "bin.jsonl")
