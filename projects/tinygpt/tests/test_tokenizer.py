"""The char and bpe tokenizers, and the hand-written BPE against the `tokenizers` library it reproduces."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tinygpt.data import SHAKESPEARE
from tinygpt.tokenizer import EOT, UNK, BytePairEncoding, Tokenizer, _cut, load_tokenizer, train_tokenizer

# Mixed English prose, Python code and some Unicode, written for this test (about 3 KB).
FIXTURE = """\
The tokenizer turns text into numbers, and the numbers back into text. A character tokenizer gives every
character its own number; a byte-pair tokenizer starts from the 256 bytes and learns to merge the pairs it
sees most often, so that common words like "the", "and" and "token" become single tokens. It's simple: count
the pairs, merge the most frequent one, and repeat until the vocabulary is full. We'll train it, we've tested
it, and they're the same as the library's merges. Isn't that neat? I'd say so; you'd agree.

def count_pairs(words):
    counts = {}
    for word, n in words.items():
        for pair in zip(word, word[1:]):
            counts[pair] = counts.get(pair, 0) + n
    return counts


class Tokenizer:
    def __init__(self, vocab_size=1024):
        self.vocab_size = vocab_size
        self.merges = []

    def encode(self, text):
        return [ord(c) for c in text]  # 1 token per character, for now

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


for step in range(10):
    loss = 1.0 / (step + 1)
    print(f"step {step:3d} loss {loss:.4f}")

Le café est très bon à Paris ; l'été, les élèves mangent des crêpes. Ça coûte 3,50 €.
Die Straße ist groß, und die Bäume blühen schön im Frühling. Über 100 Grüße!
Ελληνικά: καλημέρα κόσμε. Русский: привет, мир! Привет ещё раз.
中文：你好，世界。日本語：こんにちは世界。한국어: 안녕하세요 세계.
Emoji: 😀 🎉 👍🏽 ❤️ and a family 👨‍👩‍👧 (zero-width joiners), math: ∑ x² ≤ ∞, arrows → ← ↔.
Tabs\tand\ttabs, Windows line\r\nendings, and   runs   of   spaces   before the end.

The tokenizer turns text into numbers. The numbers come back as text. The pairs are counted, the most
frequent pair is merged, and the merges are repeated: the the the, and and and, token token token.
"""

HELD_OUT = """\
A held-out paragraph: the tokenizer has never seen this text, but it knows the pairs it merged.
def decode_pairs(merges, ids):  # code it has not seen either
    return [merges.get(i, i) for i in ids]
Les élèves de Paris. Straße, Grüße, привет, 你好 😀 🎉 ≤ ∞ \t\r\n   spaces   end.
"""

UNICODE_SAMPLES = [
    "",
    "hello world",
    "emoji 😀🎉 skin tone 👍🏽 family 👨‍👩‍👧 flag 🇫🇷",
    "中文 日本語のテキスト 한국어 텍스트",
    "combining: e\u0301 a\u0308 n\u0303; precomposed: é ä ñ",
    "windows\r\nline endings\r\n\r\n",
    "\ttabs\t\tand  double  spaces  \n\n\n trailing   ",
    "   leading spaces and a lone \u00a0 no-break space \u2028 line separator",
    "control bytes \x00\x01\x1b[0m and DEL \x7f",
    f"a special token {EOT} in the middle of text",
    "rare: \U0001d54f\U0001d550 \u0e01\u0e32\u0e23 \u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627",
]


@pytest.fixture(scope="module")
def char_tok() -> Tokenizer:
    return train_tokenizer(FIXTURE, "char")


@pytest.fixture(scope="module")
def bpe_tok() -> Tokenizer:
    return train_tokenizer(FIXTURE, "bpe", vocab_size=512)


# ---------------------------------------------------------------- char


def test_char_ids_follow_nanogpt_convention():
    text = "hello world\nHi there!"
    tok = train_tokenizer(text, "char")
    chars = sorted(set(text))  # nanoGPT: stoi = {ch: i for i, ch in enumerate(sorted(set(data)))}
    assert tok.kind == "char"
    assert tok.vocab_size == len(chars) + 1  # + <unk>, at the end
    assert tok.encode(text) == [chars.index(c) for c in text]
    assert tok.decode(tok.encode(text)) == text
    assert tok.backend.token_to_id(UNK) == len(chars)


def test_char_unseen_character_is_unk(char_tok):
    unk = char_tok.vocab_size - 1
    assert char_tok.backend.token_to_id(UNK) == unk
    ids = char_tok.encode("a\u2603b")  # a snowman: not in the fixture
    assert ids[1] == unk and unk not in (ids[0], ids[2])
    assert char_tok.decode(ids) == f"a{UNK}b"


@pytest.mark.parametrize("text", [FIXTURE, HELD_OUT, "unseen: \u2603 \U0001f9ea", f"literal {UNK} text", ""])
def test_char_fast_path_matches_library(char_tok, text):
    assert char_tok.encode(text) == char_tok.backend.encode(text, add_special_tokens=False).ids


def test_char_tiny_shakespeare_matches_nanogpt():
    tok = train_tokenizer(SHAKESPEARE.read_text(encoding="utf-8"), "char")
    assert tok.vocab_size == 65 + 1
    assert tok.encode("hii there") == [46, 47, 47, 1, 58, 46, 43, 56, 43]  # nanoGPT / "Let's build GPT"
    assert tok.encode("\n !") == [0, 1, 2]


# ---------------------------------------------------------------- bpe


def test_bpe_ids_layout(bpe_tok):
    vocab = bpe_tok.backend.get_vocab()
    assert bpe_tok.kind == "bpe" and bpe_tok.vocab_size == len(vocab) <= 512
    assert vocab[EOT] == 0 == bpe_tok.eos_id
    assert vocab["!"] == 1  # then the 256 byte characters, sorted by code point
    assert sorted(i for t, i in vocab.items() if len(t) == 1) == list(range(1, 257))


@pytest.mark.parametrize("text", UNICODE_SAMPLES)
def test_bpe_round_trips_any_unicode(bpe_tok, text):
    ids = bpe_tok.encode(text)
    assert bpe_tok.decode(ids) == text
    assert all(0 <= i < bpe_tok.vocab_size for i in ids)
    assert (bpe_tok.eos_id in ids) == (EOT in text)


def test_bpe_learns_frequent_words(bpe_tok):
    assert len(bpe_tok.encode(" the tokenizer")) < len(" the tokenizer") // 2


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_long_text_encoded_in_pieces_gives_the_same_ids(kind, char_tok, bpe_tok):
    tok = char_tok if kind == "char" else bpe_tok
    # > 64K characters takes the parallel path (and for char, the literal <unk> forces the library path)
    text = (FIXTURE + f"\n{UNK}\n") * 60
    assert len(_cut(text, 1 << 16)) > 1 and "".join(_cut(text, 1 << 16)) == text
    ids = tok.encode(text)
    assert ids == tok.backend.encode(text, add_special_tokens=False).ids
    assert tok.decode(ids) == text


# ---------------------------------------------------------------- the lesson: BPE by hand == the library


def stdlib_source() -> str:
    return Path(textwrap.__file__).read_text(encoding="utf-8")[:8000]  # present wherever Python is


@pytest.mark.parametrize(
    ("train_text", "vocab_size"),
    [(FIXTURE, 512), (FIXTURE, 300), (stdlib_source(), 600)],
    ids=["fixture", "small", "stdlib"],
)
def test_hand_written_bpe_matches_library(train_text, vocab_size):
    library = train_tokenizer(train_text, "bpe", vocab_size=vocab_size)
    model = json.loads(library.backend.to_str())["model"]
    ours = BytePairEncoding().train(train_text, vocab_size)

    merges = [[ours.vocab[a], ours.vocab[b]] for a, b in ours.merges]
    assert {token: i for i, token in enumerate(ours.vocab)} == model["vocab"]  # same tokens, same ids
    assert merges == model["merges"]  # same merges, in the same order
    assert len(merges) > 40  # enough merges that count ties and min_frequency both matter
    plain_samples = [t for t in UNICODE_SAMPLES if EOT not in t]  # the lesson's BPE knows no special tokens
    for text in (HELD_OUT, train_text, *plain_samples):
        assert ours.encode(text) == library.encode(text)
        assert ours.decode(ours.encode(text)) == text


def test_hand_written_bpe_pieces_match_library_pre_tokenizer(bpe_tok):
    # Identical for every character the library's Oniguruma knows. The `regex` package's newer Unicode tables
    # make ~1,800 recently assigned letters/digits (e.g. U+0558) differ; see the module docstring.
    ours = BytePairEncoding()
    for text in (FIXTURE, HELD_OUT, *UNICODE_SAMPLES):
        assert ours.words(text) == [w for w, _ in bpe_tok.backend.pre_tokenizer.pre_tokenize_str(text)]


def test_hand_written_bpe_tie_breaking_and_min_frequency():
    # words: "ab" x1, " cd" x3, " ab" x2, " xy" x1 ("Ġ" is the space byte, and sorts after every Latin-1 letter)
    text = "ab cd ab cd ab cd xy"
    ours = BytePairEncoding().train(text, vocab_size=1000)
    # ("a","b"), ("c","d") and ("Ġ","c") are all seen 3 times: the smallest ids win, whatever comes first in the text;
    # ("x","y") and ("Ġ","x") are seen once, below min_frequency = 2, so training stops before the vocabulary is full
    assert [ours.vocab[a] + ours.vocab[b] for a, b in ours.merges] == ["ab", "cd", "Ġcd", "Ġab"]
    library = json.loads(train_tokenizer(text, "bpe", 1000).backend.to_str())["model"]["merges"]
    assert [[ours.vocab[a], ours.vocab[b]] for a, b in ours.merges] == library


# ---------------------------------------------------------------- files and transformers


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_save_load_round_trip(kind, char_tok, bpe_tok, tmp_path):
    tok = char_tok if kind == "char" else bpe_tok
    tok.save(tmp_path / "run")
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["tokenizer.json"]  # no temp file left behind
    loaded = load_tokenizer(tmp_path / "run")
    assert (loaded.kind, loaded.vocab_size, loaded.eos_id) == (tok.kind, tok.vocab_size, tok.eos_id)
    assert loaded.encode(HELD_OUT) == tok.encode(HELD_OUT)
    assert loaded.decode(loaded.encode(FIXTURE)) == FIXTURE


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_to_hf_save_pretrained_round_trip(kind, char_tok, bpe_tok, tmp_path):
    from transformers import AutoTokenizer

    tok = char_tok if kind == "char" else bpe_tok
    tok.to_hf().save_pretrained(tmp_path)
    hf = AutoTokenizer.from_pretrained(tmp_path)
    texts = [FIXTURE, HELD_OUT] if kind == "char" else [FIXTURE, HELD_OUT, *UNICODE_SAMPLES]
    for text in texts:
        ids = tok.encode(text)
        assert hf(text, add_special_tokens=False)["input_ids"] == ids
        assert hf(text)["input_ids"] == ids  # nothing added on encode, like GPT-2
        assert hf.decode(ids) == tok.decode(ids)
    if kind == "bpe":
        assert hf.eos_token == hf.bos_token == EOT and hf.eos_token_id == 0
    else:
        assert hf.unk_token == UNK and hf.unk_token_id == tok.vocab_size - 1
    assert load_tokenizer(tmp_path).encode(HELD_OUT) == tok.encode(HELD_OUT)  # the HF folder loads back too


# ---------------------------------------------------------------- errors


def test_load_missing_or_invalid_raises_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no tokenizer.json in"):
        load_tokenizer(tmp_path / "nowhere")
    (tmp_path / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not a valid tokenizer file"):
        load_tokenizer(tmp_path)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="'char' or 'bpe'"):
        train_tokenizer("text", "word")
    with pytest.raises(ValueError, match="empty text"):
        train_tokenizer("", "char")
    with pytest.raises(ValueError, match="vocab_size >= 257"):
        train_tokenizer("text", "bpe", vocab_size=100)
    with pytest.raises(ValueError, match="token ids must be in"):
        train_tokenizer("text", "char").decode([0, 99])
