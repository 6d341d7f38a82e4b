"""Real-data readers: JSONL in the formats trl and the Hugging Face Hub use for preference and SFT data.

Preferences, one pair a line:   {"prompt": "...", "chosen": "...", "rejected": "..."}
SFT, one example a line:        {"prompt": "...", "completion": "..."}
                        or      {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", ...}]}

Each reader returns a list of dicts with just those keys (ready for `datasets.Dataset.from_list`). A line that
does not fit raises `UserError` naming the file, the line and what is wrong; blank lines are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dlshared.cli import UserError

PREFERENCE_KEYS = ("prompt", "chosen", "rejected")
COMPLETION_KEYS = ("prompt", "completion")


def read_preferences(path: str | Path) -> list[dict[str, str]]:
    """Read {"prompt", "chosen", "rejected"} lines; every value must be a string."""
    return [_strings(obj, PREFERENCE_KEYS, f"{path}, line {n}") for n, obj in _objects(path)] or _empty(path)


def read_sft(path: str | Path) -> list[dict[str, Any]]:
    """Read {"prompt", "completion"} or {"messages": [{"role", "content"}, ...]} lines, one format per file."""
    rows, first = [], None
    for n, obj in _objects(path):
        fmt = "messages" if "messages" in obj else "prompt/completion"
        if first is None:
            first = (fmt, n)
        elif fmt != first[0]:
            raise UserError(
                f"{path}, line {n}: a {fmt} example, but line {first[1]} is {first[0]}; use one format per file"
            )
        where = f"{path}, line {n}"
        rows.append(_messages(obj, where) if fmt == "messages" else _strings(obj, COMPLETION_KEYS, where))
    return rows or _empty(path)


def _objects(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, JSON object) for every non-blank line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a .jsonl file") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}, line {n}: invalid JSON ({err.msg}, column {err.colno})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{path}, line {n}: expected a JSON object, got {type(obj).__name__}")
        yield n, obj


def _strings(obj: dict[str, Any], keys: tuple[str, ...], where: str) -> dict[str, str]:
    for key in keys:
        if key not in obj:
            raise UserError(f"{where}: missing key {key!r} (expected keys: {', '.join(keys)})")
        if not isinstance(obj[key], str):
            raise UserError(f"{where}: {key!r} must be a string, got {type(obj[key]).__name__}")
    return {key: obj[key] for key in keys}


def _messages(obj: dict[str, Any], where: str) -> dict[str, list[dict[str, str]]]:
    messages = obj["messages"]
    if not isinstance(messages, list) or not messages:
        raise UserError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise UserError(f"{where}: messages[{i}] must be an object, got {type(message).__name__}")
        out.append(_strings(message, ("role", "content"), f"{where}, messages[{i}]"))
    return {"messages": out}


def _empty(path: str | Path) -> list:
    raise UserError(f"{path}: empty file, expected one JSON object per line")
