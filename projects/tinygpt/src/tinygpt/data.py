"""Text in, token batches out.

Embedded default: the source of a fixed list of Python standard-library modules (~2 MB of code, comments and
docstrings), present on every machine that runs this project, deterministic for a given Python version.
Real data: any UTF-8 text file (`--data`), split as nanoGPT splits it: first 90% train, last 10% validation; or a
Hub dataset (`--data owner/name[/config][:split]`, dlshared.hubdata): its `text` column (else its only string
column), the rows one after another, each ending in a newline, split the same way.
Tiny Shakespeare (nanoGPT's shakespeare_char data, 1.1 MB) ships with the package (data/LICENSE: char-rnn, MIT).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from dlshared.cli import UserError
from dlshared.hubdata import HubDataset, column_names, load_hub_dataset, parse_hub_id

from .config import TrainConfig
from .tokenizer import Tokenizer, train_tokenizer

# the embedded corpus: these modules' source files, in this order
STDLIB_MODULES = """
    argparse ast calendar collections configparser contextlib csv dataclasses datetime decimal difflib
    email.message enum fractions functools getopt gettext glob heapq inspect ipaddress json.decoder json.encoder
    logging optparse pathlib pprint queue random shlex shutil statistics string subprocess tarfile tempfile
    textwrap threading tokenize typing unittest.case urllib.parse uuid warnings zipfile
"""
SHAKESPEARE = Path(__file__).parent / "data" / "tinyshakespeare.txt"
"""Shipped: https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"""
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TRAIN_FRACTION = 0.9


def stdlib_corpus() -> str:
    """The embedded corpus: each module's source file, in a fixed order, under a `# file:` header line."""
    parts = []
    for name in STDLIB_MODULES.split():
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            continue  # a Python build without this module's source; the rest still makes a corpus
        parts.append(f"# file: {name}\n{Path(spec.origin).read_text(encoding='utf-8')}")
    if not parts:
        raise UserError(f"no standard-library sources found next to {sys.executable}; pass --data FILE")
    return "\n".join(parts)


def shakespeare_path() -> Path:
    """tiny Shakespeare (1.1 MB), shipped with the package (char-rnn's file, MIT: data/LICENSE)."""
    path = SHAKESPEARE
    if not path.is_file():
        raise UserError(f"{path} is missing from this install: reinstall tinygpt, or pass --data path/to/text.txt")
    return path


def read_text_file(path: Path) -> str:
    if not path.is_file():
        raise UserError(f"--data {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"--data {path}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    return text


TEXT_TYPES = ("string", "large_string")
"""The dtypes of a datasets.Value column that holds text."""


def hub_text(spec: HubDataset) -> tuple[str, str]:
    """(text, source) of a Hub dataset: its `text` column, else its only string column, each row ending in a
    newline (rows that are lines, as wikitext's, keep the one they have)."""
    dataset = load_hub_dataset(spec, "--data", "a local UTF-8 text file")
    strings = [name for name, kind in dataset.features.items() if getattr(kind, "dtype", None) in TEXT_TYPES]
    if "text" in strings:
        column = "text"
    elif len(strings) == 1:
        column = strings[0]
    else:  # several string columns (or none): which is the text is a guess this project does not make
        raise UserError(
            f"--data {spec}: no `text` column, and not exactly one string column to take instead "
            f"(columns: {column_names(dataset)}); pass a text file instead"
        )
    rows = (row for row in dataset[column] if row is not None)
    return "".join(row if row.endswith("\n") else row + "\n" for row in rows), f"{spec} ({column} column)"


def read_text(data: str | os.PathLike) -> tuple[str, str]:
    """(text, source) of a --data value: a local text file, or a Hub dataset (dlshared.hubdata decides which)."""
    spec = parse_hub_id(data)
    return (read_text_file(Path(data)), str(data)) if spec is None else hub_text(spec)


def load_text(data: str | os.PathLike | None, dataset: str, max_chars: int | None = None) -> tuple[str, str]:
    """(text, where it came from): the `data` file or Hub dataset if given, else tiny Shakespeare or the stdlib
    corpus."""
    if data is not None:
        text, source = read_text(data)
    elif dataset == "shakespeare":
        text, source = read_text_file(shakespeare_path()), "tiny Shakespeare"
    else:
        python = f"{sys.version_info.major}.{sys.version_info.minor}"
        text, source = stdlib_corpus(), f"Python {python} stdlib source"
    return text[:max_chars], source


def split_text(text: str) -> tuple[str, str]:
    """nanoGPT's split: the first 90% of the characters train, the last 10% validate."""
    cut = int(len(text) * TRAIN_FRACTION)
    return text[:cut], text[cut:]


@dataclass
class TokenData:
    tokenizer: Tokenizer
    train: torch.Tensor  # (N_train,) int32 token ids
    val: torch.Tensor  # (N_val,)
    source: str


def load_data(cfg: TrainConfig, tokenizer: Tokenizer | None = None) -> TokenData:
    """Read, split 90/10 by characters, train the tokenizer (unless given: a resumed run keeps its own), encode."""
    text, source = load_text(cfg.data, cfg.dataset, cfg.max_chars)
    train_text, val_text = split_text(text)
    if tokenizer is None:
        # char: the vocabulary of the whole text, as nanoGPT builds it; bpe: merges learned on train only
        tokenizer = train_tokenizer(text if cfg.tokenizer == "char" else train_text, cfg.tokenizer, cfg.vocab_size)
    train = torch.tensor(tokenizer.encode(train_text), dtype=torch.int32)
    val = torch.tensor(tokenizer.encode(val_text), dtype=torch.int32)
    shortest = cfg.block_size + 2
    if len(train) < shortest or len(val) < shortest:
        raise UserError(
            f"{source}: {len(train)} train / {len(val)} validation tokens; each split needs more than "
            f"the context length {cfg.block_size} (use a longer text or a smaller --block-size)"
        )
    return TokenData(tokenizer, train, val, source)


class Batches:
    """Random windows of a token sequence, as nanoGPT's get_batch: x = ids[i : i+T], y = ids[i+1 : i+T+1].

    Its own seeded generator makes the stream reproducible and resumable (`state` / `load_state`).
    """

    def __init__(self, ids: torch.Tensor, block_size: int, batch_size: int, seed: int, device: torch.device):
        self.windows = ids.unfold(0, block_size + 1, 1)  # (N - T, T + 1): a view, nothing copied
        self.batch_size, self.device = batch_size, device
        self.generator = torch.Generator().manual_seed(seed)

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(len(self.windows), (self.batch_size,), generator=self.generator)
        chunk = self.windows[starts].long()  # (B, T + 1)
        if self.device.type == "cuda":
            chunk = chunk.pin_memory().to(self.device, non_blocking=True)
        else:
            chunk = chunk.to(self.device)
        return chunk[:, :-1], chunk[:, 1:]

    def state(self) -> torch.Tensor:
        """Where the stream is: the generator's state, a tensor of its own (uint8), safe to save and gather."""
        return self.generator.get_state().clone()

    def load_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


MASK_RATE = 0.15
"""BERT's rate: the share of positions a masked-LM window asks the model to predict."""


def mask_tokens(ids: torch.Tensor, mask_id: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking of ids (B, T) -> (inputs, targets), each (B, T); targets are -1 where nothing is asked.

    15% of positions are chosen; of those, 80% become the mask token, 10% a random token, 10% stay as they are, so
    the model cannot learn that only mask tokens need predicting. The draws come from `generator` (CPU), so a
    stream of batches is reproducible and resumable, and evaluation masks the same positions every time."""
    chosen = torch.rand(ids.shape, generator=generator) < MASK_RATE
    action = torch.rand(ids.shape, generator=generator)  # < 0.8 mask, < 0.9 random token, else keep
    random_ids = torch.randint(mask_id, ids.shape, generator=generator)  # any real token (ids below mask_id)
    chosen, action, random_ids = chosen.to(ids.device), action.to(ids.device), random_ids.to(ids.device)
    inputs = torch.where(chosen & (action < 0.8), mask_id, ids)
    inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, inputs)
    targets = torch.where(chosen, ids, -1)  # cross_entropy(ignore_index=-1) scores the chosen positions only
    return inputs, targets


class MaskedBatches(Batches):
    """Batches for the masked-LM objective: the same random windows, masked by `mask_tokens` with the stream's own
    generator (one state to save and resume, as for `Batches`)."""

    def __init__(self, ids, block_size, batch_size, seed, device, mask_id: int):
        super().__init__(ids, block_size, batch_size, seed, device)
        self.mask_id = mask_id

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, _ = super().__next__()  # (B, T): the window; the next-token targets are not used
        return mask_tokens(x, self.mask_id, self.generator)
