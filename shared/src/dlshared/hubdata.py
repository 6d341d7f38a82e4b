"""`--data owner/name`: a Hugging Face Hub dataset wherever a project reads a local data file or folder.

One rule, the same in every project that takes it:
- a value that exists on disk is a local path, as before;
- else `owner/name`, `owner/name:split` or `owner/name/config:split` is a Hub dataset, loaded with
  `datasets.load_dataset` (split `train` unless one is named; datasets' slices work too: `train[:5000]`);
- anything else is a local path that is missing, and gets the project's own "no such file" error: an absolute or
  `./` path, a single name, a name ending in a file suffix (`data/tiny.txt`), or `data/x` where `data/` is a folder
  here: mistyped local paths are never sent to the Hub.
datasets keeps what it downloads in its cache (under HF_HOME), so a dataset loaded once loads offline too. When one
cannot be loaded (offline, unknown id, no such split) the error is one line: the reason and what to do instead.
Each project turns the loaded `datasets.Dataset` into what it already consumes, in its own data module (and
declares `datasets` among its dependencies: it is imported only when a Hub dataset is loaded).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import tyro

from .cli import UserError, short_reason

if TYPE_CHECKING:
    import datasets

DataSource = Annotated[str | None, tyro.conf.arg(metavar="{None}|PATH|OWNER/NAME")]
"""The type of a `--data` field that takes a local path or a Hub dataset id (a string: a Hub id is no path)."""

HUB_ID = re.compile(r"(?P<repo>[\w.-]+/[\w.-]+)(?:/(?P<config>[\w.-]+))?(?::(?P<split>.+))?")
FILE_SUFFIXES = frozenset(
    {".txt", ".md", ".json", ".jsonl", ".csv", ".tsv", ".parquet", ".arrow", ".zip", ".gz", ".tar", ".tgz", ".xz"}
    | {".bz2", ".zst", ".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
)
"""Suffixes that mark a value as a file name: `corpus/tiny.txt` that does not exist is a missing file."""


@dataclass(frozen=True)
class HubDataset:
    repo: str
    """The dataset's repository on the Hub: owner/name."""
    config: str | None = None
    """The dataset's configuration (subset), for datasets that have several: Salesforce/wikitext/wikitext-2-raw-v1."""
    split: str = "train"
    """What `load_dataset(split=...)` takes: "train", "test", "train[:1000]"."""

    def __str__(self) -> str:
        return f"{self.repo}{f'/{self.config}' if self.config else ''}:{self.split}"


def parse_hub_id(value: str | os.PathLike | None) -> HubDataset | None:
    """The Hub dataset `value` names, or None when it is a local path (one that exists, or one that looks like a
    path). A `Path` object is always local: only a string typed as `--data` can name a Hub dataset."""
    if value is None or isinstance(value, os.PathLike) or os.path.exists(value):  # (False for a name too long)
        return None
    match = HUB_ID.fullmatch(value)
    if match is None:
        return None
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    repo, config = match["repo"], match["config"]
    try:
        validate_repo_id(repo)
    except HFValidationError:
        return None
    if Path(config or repo).suffix.lower() in FILE_SUFFIXES or Path(repo.split("/")[0]).is_dir():
        return None
    return HubDataset(repo, config, match["split"] or "train")


def load_hub_dataset(spec: HubDataset, flag: str, local_form: str) -> datasets.Dataset:
    """One split of a Hub dataset (through datasets' cache). Offline and not cached, unknown, or without that
    split: a one-line UserError with the reason, saying to run once online or to pass `local_form` instead."""
    import datasets

    try:
        dataset = datasets.load_dataset(spec.repo, spec.config, split=spec.split)
    except Exception as err:  # offline, no such dataset/config/split, a script-based dataset: datasets says which
        raise UserError(
            f"{flag} {spec}: neither a local path nor a Hub dataset that could be loaded ({_reason(err, spec)}); "
            f"run once with network (datasets then keeps it in {datasets.config.HF_DATASETS_CACHE} for offline "
            f"use), or pass {local_form}"
        ) from None
    if len(dataset) == 0:
        raise UserError(f"{flag} {spec}: the split has no rows")
    return dataset


def _reason(err: Exception, spec: HubDataset) -> str:
    """datasets' reason, with the choices it lists where the Hub id must name a config or another split."""
    reason, lines = short_reason(err), str(err).strip().splitlines()
    if reason.startswith("Config name is missing") and len(lines) > 1:  # the configs are on the next line
        return f"{reason} {lines[1].strip()[:200]}; name one as {spec.repo}/CONFIG"
    if reason.startswith("Unknown split"):
        return f"{reason}; name one as {spec.repo}{f'/{spec.config}' if spec.config else ''}:SPLIT"
    return reason


def column_names(dataset: datasets.Dataset) -> str:
    """The dataset's column names, comma-separated: for an error that says which columns it has."""
    return ", ".join(dataset.column_names) or "none"
