"""Real-data readers: JSONL in the formats trl and the Hugging Face Hub use for preference and SFT data.

Preferences, one pair a line:   {"prompt": "...", "chosen": "...", "rejected": "..."}
SFT, one example a line:        {"prompt": "...", "completion": "..."}
                        or      {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", ...}]}

Each reader returns a list of dicts with just those keys (ready for `datasets.Dataset.from_list`). A line that
does not fit raises `UserError` naming the file, the line and what is wrong; blank lines are skipped.
`read_any` tells the two kinds apart by the first line's keys; `load_task_data` turns a file (or, without one,
the synthetic task of task.py) into what the stages need: SFT rows, training pairs, held-out pairs.

A Hub dataset (`--data owner/name[/config][:split]`, dlshared.hubdata) gives the same rows from TRL's column names:
prompt/chosen/rejected, or chosen/rejected alone (the prompt implicit: their shared beginning, trl's
`maybe_extract_prompt`) -> preferences; prompt/completion or messages -> SFT. Conversational values (lists of
{role, content}) become messages for SFT, and plain "User: ...\nAssistant:" text in preference pairs (whose
values are strings: the pairs are scored as text).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlshared.cli import UserError
from dlshared.hubdata import HubDataset, column_names, load_hub_dataset, parse_hub_id

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


def read_any(path: str | Path) -> tuple[str, list[dict[str, Any]]]:
    """("preferences", rows) when the first line has a "chosen" key, else ("sft", rows)."""
    first = next(_objects(path), None)
    if first is None:
        _empty(path)
    if "chosen" in first[1] or "rejected" in first[1]:
        return "preferences", read_preferences(path)
    return "sft", read_sft(path)


def read_data(data: str | Path) -> tuple[str, list[dict[str, Any]], str]:
    """(kind, rows, source) of a --data value: a local JSONL file (`read_any`) or a Hub dataset (`hub_rows`)."""
    spec = parse_hub_id(data)
    return (*read_any(data), str(data)) if spec is None else (*hub_rows(spec), str(spec))


HUB_FORMATS = "prompt/chosen/rejected, chosen/rejected, prompt/completion or messages"


def hub_rows(spec: HubDataset) -> tuple[str, list[dict[str, Any]]]:
    """("preferences" | "sft", rows) of a Hub dataset in TRL's standard columns, as `read_any` gives a file's."""
    dataset = load_hub_dataset(spec, "--data", f"a local JSONL file ({HUB_FORMATS} lines)")
    columns = set(dataset.column_names)
    if {"chosen", "rejected"} <= columns:
        kind, keys = "preferences", [k for k in PREFERENCE_KEYS if k in columns]
    elif set(COMPLETION_KEYS) <= columns:
        kind, keys = "sft", list(COMPLETION_KEYS)
    elif "messages" in columns:
        kind, keys = "sft", ["messages"]
    else:
        raise UserError(f"--data {spec}: expected the columns {HUB_FORMATS}; it has {column_names(dataset)}")
    rows = []
    for n, example in enumerate(dataset.select_columns(keys), start=1):
        where = f"{spec}, row {n}"
        if kind == "preferences":
            rows.append(_pair(example, where))
        elif keys == ["messages"]:
            rows.append(_messages(example, where))
        elif isinstance(example["prompt"], list) and isinstance(example["completion"], list):  # conversational
            rows.append(_messages({"messages": example["prompt"] + example["completion"]}, where))
        else:
            rows.append(_strings(example, COMPLETION_KEYS, where))
    return kind, rows


def _pair(example: dict[str, Any], where: str) -> dict[str, str]:
    """A preference example as a pair of strings; a prompt left implicit is first taken out of chosen and rejected
    by trl's rule (`maybe_extract_prompt`: the beginning they share)."""
    from trl.data_utils import maybe_extract_prompt

    pair = maybe_extract_prompt(example)
    return {key: _text(pair[key], f"{where}, {key}", key == "prompt") for key in PREFERENCE_KEYS}


def _text(value: Any, where: str, prompt: bool) -> str:
    """A preference value as text: a string as it is; messages as `plain_chat` lays them out (a prompt ends with
    "Assistant:", an answer starts with a space, as `to_prompt_completion` renders chats without a template)."""
    if isinstance(value, str):
        return value
    messages = _messages({"messages": value}, where)["messages"]
    return plain_chat(messages) + "Assistant:" if prompt else " " + "\n".join(m["content"] for m in messages)


def plain_chat(messages: list[dict[str, str]]) -> str:
    """Messages as plain text, "User: ...\nAssistant: ..." (task.PROMPT_TEMPLATE's layout), for tokenizers
    without a chat template."""
    return "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages)


def to_prompt_completion(rows: list[dict[str, Any]], tokenizer) -> list[dict[str, str]]:
    """Chat rows -> prompt/completion: the last assistant message is the completion, everything before it the
    prompt, rendered with the tokenizer's chat template when it has one, else `plain_chat`."""
    out = []
    for row in rows:
        if "messages" not in row:
            out.append(row)
            continue
        messages = row["messages"]
        if messages[-1]["role"] != "assistant":
            raise UserError(f"a messages example must end with an assistant message, got {messages[-1]['role']!r}")
        if getattr(tokenizer, "chat_template", None):
            prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
            full = tokenizer.apply_chat_template(messages, tokenize=False)
            completion = full[len(prompt) :] if full.startswith(prompt) else messages[-1]["content"]
        else:
            prompt, completion = plain_chat(messages[:-1]) + "Assistant:", " " + messages[-1]["content"]
        out.append({"prompt": prompt, "completion": completion})
    return out


@dataclass
class TaskData:
    """What the stages and the evaluation use, from the synthetic task or a user's file."""

    source: str
    template: str  # how a user's question becomes a prompt (the demo uses it)
    sft_rows: list[dict[str, Any]]
    train_pairs: list[dict[str, str]] = field(default_factory=list)
    heldout_pairs: list[dict[str, str]] = field(default_factory=list)
    eval_items: list[tuple[str, int]] = field(default_factory=list)  # synthetic only: (prompt, expected sum)


def load_task_data(cfg) -> TaskData:
    """The synthetic task (cfg.data unset) or the user's JSONL file or Hub dataset, split into train and held-out
    parts."""
    from . import task

    if cfg.data is None:
        spec = task.TaskSpec(
            cfg.max_number, cfg.heldout_fraction, tuple(cfg.format_fractions), cfg.wrong_fraction, cfg.data_seed
        )
        train, heldout = task.split_pairs(spec)
        return TaskData(
            source="synthetic addition",
            template=task.PROMPT_TEMPLATE,
            sft_rows=task.sft_rows(train, cfg.sft_examples, spec, cfg.data_seed + 1),
            train_pairs=task.dpo_pairs(train, cfg.dpo_pairs, spec, cfg.data_seed + 2),
            heldout_pairs=task.dpo_pairs(heldout, cfg.eval_prompts, spec, cfg.data_seed + 3),
            eval_items=task.eval_prompts(heldout, cfg.eval_prompts, cfg.data_seed + 4),
        )
    kind, rows, source = read_data(cfg.data)
    if kind == "sft":
        return TaskData(source=source, template="{prompt}", sft_rows=rows)
    if len(rows) < 2:
        raise UserError(f"{source}: {len(rows)} preference pair; need at least 2 (one is held out)")
    order = list(range(len(rows)))
    random.Random(cfg.data_seed).shuffle(order)
    cut = min(len(rows) - 1, max(1, round(len(rows) * cfg.heldout_fraction)))
    heldout, train = [rows[i] for i in order[:cut]], [rows[i] for i in order[cut:]]
    return TaskData(
        source=source,
        template="{prompt}",
        train_pairs=train,
        heldout_pairs=heldout,
        sft_rows=[{"prompt": p["prompt"], "completion": p["chosen"]} for p in train],  # SFT on chosen answers
    )


def read_heldout_pairs(data: str | Path) -> TaskData:
    """A preference file or Hub dataset to evaluate on as a whole: every pair is held out (the run never saw it)."""
    kind, rows, source = read_data(data)
    if kind != "preferences":
        raise UserError(f"{source}: eval needs {{prompt, chosen, rejected}} pairs")
    return TaskData(source=source, template="{prompt}", sft_rows=[], heldout_pairs=rows)
