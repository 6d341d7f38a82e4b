"""Text <-> token ids: the lesson of course day 27 (tokenization).

Two tokenizers, one interface (`Tokenizer.encode/decode/save/to_hf`):
  char  nanoGPT's shakespeare_char: the sorted set of the training text's characters, then one `<unk>` at the end
        for characters never seen in training (so nanoGPT's ids are unchanged: tiny Shakespeare gives its 65)
  bpe   GPT-2's byte-level BPE: every UTF-8 byte is a token to start with, so any text round-trips; the most
        frequent adjacent pair is merged into a new token until the vocabulary is full; `<|endoftext|>` is id 0

The lesson, written out by hand: `BytePairEncoding` trains and applies byte-level BPE in plain Python (GPT-2's
pre-tokenization regex, bytes mapped to printable characters, pair counts over words weighted by frequency). It
reproduces the `tokenizers` library exactly: the same vocabulary, the same merges in the same order, the same ids
(tests/test_tokenizer.py checks it). The rules it must share with the library's trainer (models/bpe/trainer.rs):
  - ids: special tokens first, then the 256 byte characters sorted by code point, then merges in creation order;
  - each step merges the pair with the highest count, ties going to the smallest (left id, right id);
  - training stops at `vocab_size`, or when the best pair is seen fewer than `min_frequency` times;
  - a merge whose string is already in the vocabulary reuses that id instead of adding a new one.
One known difference, outside the lesson's concern: the `regex` package knows the newest Unicode version, the
library's Oniguruma an older one, so ~1,800 recently assigned letters and digits (e.g. U+0558, U+208F, most in
the supplementary planes) are split into different pieces; every older character is split identically.

From the libraries: `tokenizers` does the real work (fast Rust training and encoding, the `tokenizer.json` file
format); `transformers` wraps it as a `PreTrainedTokenizerFast` so that `save_pretrained` / `AutoTokenizer` work.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import regex
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as Backend

from dlshared.checkpoint import atomic_path

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

TOKENIZER_FILE = "tokenizer.json"
UNK = "<unk>"  # the char tokenizer's id for unseen characters (its last id)
EOT = "<|endoftext|>"  # the bpe tokenizer's document separator (id 0), as in GPT-2
MIN_FREQUENCY = 2  # a pair seen only once is not a pattern worth a token

# GPT-2's pre-tokenization: contractions, letters, digits, punctuation runs (each may take one leading space), and
# whitespace. BPE never merges across these pieces, so " the" and "the," stay apart. The same pattern as the
# `tokenizers` ByteLevel pre-tokenizer.
GPT2_SPLIT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

# Where long texts may be cut for parallel encoding without changing a single id: a lone newline between two
# printable ASCII characters always ends a GPT-2 piece, and no special token contains a newline.
SAFE_CUT = re.compile(r"(?<=[!-~]\n)(?=[!-~])")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from the 256 byte values to printable characters, so that a token is a readable string.

    Printable Latin-1 bytes map to themselves; the others (control characters, space, ...) to chr(256 + n).
    That is why a leading space shows up as 'Ġ' (chr(256 + 32)) in GPT-2 vocabularies.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    moved = [b for b in range(256) if b not in keep]
    return {**{b: chr(b) for b in keep}, **{b: chr(256 + n) for n, b in enumerate(moved)}}


class BytePairEncoding:
    """Byte-level BPE by hand: `train(text, vocab_size)`, then `encode(text)` / `decode(ids)`.

    Slow (it recounts every pair after every merge) but short; `train_tokenizer(kind="bpe")` uses the library.
    """

    def __init__(self, special_tokens: tuple[str, ...] = (EOT,)):
        self.byte_to_char = bytes_to_unicode()
        self.char_to_byte = {c: b for b, c in self.byte_to_char.items()}
        self.special_tokens = special_tokens
        self.vocab: list[str] = []  # id -> token string (byte characters, or a special token)
        self.token_id: dict[str, int] = {}  # token string -> id
        self.merges: list[tuple[int, int]] = []  # in creation order: merges[rank] = (left id, right id)
        self.merge_ids: dict[tuple[int, int], tuple[int, int]] = {}  # pair -> (rank, id of the merged token)

    def words(self, text: str) -> list[str]:
        """Pre-tokenize: GPT-2 pieces, each as its UTF-8 bytes spelled with `bytes_to_unicode` characters."""
        return ["".join(self.byte_to_char[b] for b in piece.encode("utf-8")) for piece in GPT2_SPLIT.findall(text)]

    def train(self, text: str, vocab_size: int, min_frequency: int = MIN_FREQUENCY) -> BytePairEncoding:
        self.vocab = [*self.special_tokens, *sorted(self.byte_to_char.values())]
        self.token_id = token_id = {token: i for i, token in enumerate(self.vocab)}
        # every distinct word once, as a tuple of token ids, with how often it occurs in the text
        words = Counter(tuple(token_id[c] for c in word) for word in self.words(text))
        self.merges, self.merge_ids = [], {}
        while len(self.vocab) < vocab_size:
            pairs: Counter[tuple[int, int]] = Counter()
            for word, n in words.items():
                for pair in pairwise(word):
                    pairs[pair] += n
            if not pairs:
                break
            # the most frequent pair; among equals, the smallest (left id, right id), as the library's heap does
            best = min(pairs, key=lambda p: (-pairs[p], p))
            if pairs[best] < max(min_frequency, 1):
                break
            merged = self.vocab[best[0]] + self.vocab[best[1]]
            if merged not in token_id:  # ("a", "bc") after ("ab", "c") makes no new token
                token_id[merged] = len(self.vocab)
                self.vocab.append(merged)
            self.merge_ids[best] = (len(self.merges), token_id[merged])
            self.merges.append(best)
            merged_words: Counter[tuple[int, ...]] = Counter()
            for word, n in words.items():  # (two words can become one when a merge reuses an id)
                merged_words[merge_pair(word, best, token_id[merged])] += n
            words = merged_words
        return self

    def encode_word(self, word: tuple[int, ...]) -> tuple[int, ...]:
        """Apply the learned merges in the order they were learned: always the lowest-ranked pair present."""
        while len(word) > 1:
            ranked = [self.merge_ids[p] for p in pairwise(word) if p in self.merge_ids]
            if not ranked:
                break
            rank, new_id = min(ranked)
            word = merge_pair(word, self.merges[rank], new_id)
        return word

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for word in self.words(text):
            ids.extend(self.encode_word(tuple(self.token_id[c] for c in word)))
        return ids

    def decode(self, ids: list[int]) -> str:
        data = b"".join(self.token_bytes(self.vocab[i]) for i in ids)
        return data.decode("utf-8", errors="replace")  # a cut inside a character's bytes shows as U+FFFD

    def token_bytes(self, token: str) -> bytes:
        """A special token stands for its own text; any other token spells bytes in `bytes_to_unicode` characters."""
        if token in self.special_tokens:
            return token.encode()
        return bytes(self.char_to_byte[c] for c in token)


def merge_pair(word: tuple[int, ...], pair: tuple[int, int], new_id: int) -> tuple[int, ...]:
    """Replace each occurrence of `pair` in `word`, left to right (so 'aaa' with ('a', 'a') gives 'aa a')."""
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


class Tokenizer:
    """A thin wrapper around a `tokenizers.Tokenizer` (`.backend`): what the rest of tinygpt uses."""

    def __init__(self, backend: Backend):
        self.backend = backend
        model = json.loads(backend.to_str())["model"]["type"]
        if model not in ("WordLevel", "BPE"):
            raise ValueError(f"expected a char (WordLevel) or bpe (BPE) tokenizer, got a {model} model")
        self.kind = "char" if model == "WordLevel" else "bpe"
        self.vocab_size = backend.get_vocab_size(with_added_tokens=True)
        self.eos_id = backend.token_to_id(EOT)  # None for char
        # char: a plain dict lookup is ~30x faster than the library and gives the same ids (tests check it)
        self._char_ids = backend.get_vocab() if self.kind == "char" else {}
        self._unk_id = backend.token_to_id(UNK)

    def __repr__(self) -> str:
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size})"

    def encode(self, text: str) -> list[int]:
        if self.kind == "char" and UNK not in text:  # the literal "<unk>" is a special token: library path
            return [self._char_ids.get(c, self._unk_id) for c in text]
        if len(text) < 1 << 16:
            return self.backend.encode(text, add_special_tokens=False).ids
        # long text: cut where no token can straddle, encode the pieces in parallel (identical ids, ~2x on 2 cores)
        pieces = [e.ids for e in self.backend.encode_batch(_cut(text, 1 << 16), add_special_tokens=False)]
        return [i for ids in pieces for i in ids]

    def decode(self, ids: list[int]) -> str:
        ids = [int(i) for i in ids]  # also accepts a tensor's .tolist() of numpy ints
        if any(not 0 <= i < self.vocab_size for i in ids):
            raise ValueError(f"token ids must be in [0, {self.vocab_size}), got {min(ids)}..{max(ids)}")
        return self.backend.decode(ids, skip_special_tokens=False)

    def save(self, folder: Path) -> None:
        """Write folder/tokenizer.json atomically: a killed run leaves the old file or the new one, never half."""
        with atomic_path(Path(folder) / TOKENIZER_FILE) as tmp:
            tmp.write_text(self.backend.to_str(pretty=True), encoding="utf-8")

    def to_hf(self) -> PreTrainedTokenizerFast:
        """The same tokenizer as a `transformers.PreTrainedTokenizerFast`, for `save_pretrained` / `AutoTokenizer`.

        It adds no special tokens when encoding (there is no post-processor), like GPT-2's.
        """
        from transformers import PreTrainedTokenizerFast  # noqa: F811 (heavy import, only when exporting)

        # GPT-2's convention for BPE: one token is bos, eos and unk (byte-level BPE never needs unk)
        gpt2_special = {"bos_token": EOT, "eos_token": EOT, "unk_token": EOT}
        special = {"unk_token": UNK} if self.kind == "char" else gpt2_special
        return PreTrainedTokenizerFast(tokenizer_object=Backend.from_str(self.backend.to_str()), **special)


def _cut(text: str, size: int) -> list[str]:
    """Split `text` into pieces of about `size` characters, only at `SAFE_CUT` positions."""
    pieces, start = [], 0
    while start < len(text):
        cut = SAFE_CUT.search(text, start + size) if start + size < len(text) else None
        end = cut.start() if cut else len(text)
        pieces.append(text[start:end])
        start = end
    return pieces


def train_tokenizer(text: str, kind: str = "char", vocab_size: int = 1024) -> Tokenizer:
    """A char tokenizer of `text`'s characters (vocab_size is ignored), or a byte-level BPE of `vocab_size` tokens."""
    if kind not in ("char", "bpe"):
        raise ValueError(f"tokenizer kind must be 'char' or 'bpe', got {kind!r}")
    if not text:
        raise ValueError("cannot train a tokenizer on empty text")
    if kind == "char":
        chars = sorted(set(text))
        vocab = {c: i for i, c in enumerate(chars)} | {UNK: len(chars)}
        backend = Backend(models.WordLevel(vocab, unk_token=UNK))
        backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character
        backend.decoder = decoders.Fuse()  # join the characters back with nothing in between
        backend.add_special_tokens([AddedToken(UNK, special=True, normalized=False)])
        return Tokenizer(backend)
    if vocab_size < 257:
        raise ValueError(f"a byte-level BPE needs vocab_size >= 257 (256 bytes + {EOT}), got {vocab_size}")
    backend = Backend(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=MIN_FREQUENCY,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, seen in training or not
        show_progress=False,
    )
    backend.train_from_iterator([text], trainer)
    return Tokenizer(backend)


def load_tokenizer(folder: Path) -> Tokenizer:
    """Read folder/tokenizer.json, as written by `Tokenizer.save` (or `save_pretrained` of `to_hf()`)."""
    path = Path(folder) / TOKENIZER_FILE
    if not path.is_file():
        raise ValueError(f"no {TOKENIZER_FILE} in {folder}: train a model first, or point to a run folder")
    try:
        backend = Backend.from_file(str(path))
    except Exception as e:  # the library raises a bare Exception for malformed JSON
        raise ValueError(f"{path} is not a valid tokenizer file: {e}") from e
    return Tokenizer(backend)
