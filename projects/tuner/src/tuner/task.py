"""The embedded default task: two-number addition asked as an instruction, checkable by a rule, offline.

Why this task: a small model can become competent at it in minutes on a CPU, its answers can be verified
exactly (no judge model), and it has two separate properties that each training stage is responsible for:

    correct    the number is a + b                       -> taught by pretraining on raw arithmetic text
    formatted  the answer reads "The answer is N."       -> SFT makes it happen sometimes, DPO makes it a rule

Stage by stage (`TaskSpec` sets the sizes):
    pretraining corpus  "23+45=68", "23 plus 45 is 68", "Kid: Add 23 and 45.\\nParent: That makes 68." ...
                        (sums in dialogues between many speakers, bare or inside a short sentence; no "The
                        answer is", no User/Assistant template)
    SFT rows            {"prompt": "User: What is 23 plus 45?\\nAssistant:",
                         "completion": " The answer is 68."}
                        or the bare " 68": how often the format is followed depends on how the question is
                        phrased (`format_fractions`), as in instruction data pooled from several sources
    DPO pairs           chosen " The answer is 68."; rejected the bare correct " 68", or (`wrong_fraction`)
                        a bare wrong number " 67"
Number pairs are split once: held-out pairs (both orders) never appear in any training text, so every metric
on them measures generalisation, not memory (the notes record that DPO on memorised pairs stays at chance).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

PROMPT_TEMPLATE = "User: {prompt}\nAssistant:"
"""How a question becomes the model's prompt (the same plain template chat messages are rendered with)."""
FORMAT = "The answer is {}."
QUESTIONS = ("What is {a} plus {b}?", "What is {a} + {b}?", "How much is {a} plus {b}?", "Add {a} and {b}.")
STATEMENTS = (
    "{a}+{b}={c}",
    "{a} + {b} = {c}",
    "{a} plus {b} is {c}",
    "{a} plus {b} equals {c}.",
    "the sum of {a} and {b} is {c}",
    "{c} = {a} + {b}",
    "{asker}: {question}\n{answerer}: {reply}",  # dialogue: the operands far from the answer, as in a chat
    "{asker}: {question}\n{answerer}: {reply}",
    "{question} {c}",
)
REPLIES = ("{c}", "{c}", "{c}", "It is {c}.", "That makes {c}.", "I get {c}.", "The sum is {c}.", "So it's {c}.")
"""How the corpus's dialogues answer: the bare sum, or the sum inside a short sentence. Without the sentences the
base adds well after "Assistant:" but not after "The answer is" (a wrapper it never met): measured, SFT then taught
the format on every seed and the sum under it on some (formatted answers right: 0.96, 0.53, 0.11 by seed)."""
SPEAKERS = (("Q", "A"), ("Question", "Answer"), ("Teacher", "Pupil"), ("Ann", "Bob"), ("Kid", "Parent"))
"""Who asks and who answers in the corpus's dialogues: the base meets sums in many wrappers (never the chat
template's User/Assistant), so that SFT has only the wrapper to learn, not the arithmetic again."""
_FORMATTED = re.compile(r"^The answer is (\d+)\.$")
_NUMBER = re.compile(r"-?\d+")


@dataclass(frozen=True)
class TaskSpec:
    max_number: int = 49
    """Operands are 0..max_number."""
    heldout_fraction: float = 0.1
    """Share of unordered number pairs kept out of every training text."""
    format_fractions: tuple[float, ...] = (1.0, 0.6, 0.3, 0.1)
    """Share of SFT completions in the required format, per question phrasing (QUESTIONS order); the rest are
    bare numbers. One phrasing mostly formatted, the others mostly not: after SFT the rule holds sometimes."""
    wrong_fraction: float = 0.2
    """Share of DPO pairs whose rejected answer is a wrong bare number (the rest: the correct bare number)."""
    seed: int = 0


def split_pairs(spec: TaskSpec) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(train, held-out) ordered pairs (a, b); a held-out {a, b} is held out in both orders."""
    n = spec.max_number + 1
    unordered = [(a, b) for a in range(n) for b in range(a, n)]
    random.Random(spec.seed).shuffle(unordered)
    cut = max(1, round(len(unordered) * spec.heldout_fraction))
    both = [sorted({(a, b), (b, a)}) for a, b in unordered]
    heldout = [p for pair in both[:cut] for p in pair]
    train = [p for pair in both[cut:] for p in pair]
    return train, heldout


def render_prompt(question: str, template: str = PROMPT_TEMPLATE) -> str:
    return template.format(prompt=question)


def question(a: int, b: int, rng: random.Random) -> str:
    return QUESTIONS[rng.randrange(len(QUESTIONS))].format(a=a, b=b)


def pretrain_corpus(pairs: list[tuple[int, int]], n_docs: int, seed: int) -> list[str]:
    """`n_docs` short statements of true sums in mixed phrasings: the base model's "web text"."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        a, b = rng.choice(pairs)
        asker, answerer = rng.choice(SPEAKERS)
        texts = {"question": question(a, b, rng), "asker": asker, "answerer": answerer}
        texts["reply"] = rng.choice(REPLIES).format(c=a + b)
        docs.append(rng.choice(STATEMENTS).format(a=a, b=b, c=a + b, **texts))
    return docs


def sft_rows(pairs: list[tuple[int, int]], n: int, spec: TaskSpec, seed: int) -> list[dict[str, str]]:
    """Instruction -> correct answer; in the required format with the probability its phrasing has."""
    if len(spec.format_fractions) != len(QUESTIONS):
        raise ValueError(f"format_fractions needs {len(QUESTIONS)} values, one per phrasing: {QUESTIONS}")
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.choice(pairs)
        k = rng.randrange(len(QUESTIONS))
        answer = FORMAT.format(a + b) if rng.random() < spec.format_fractions[k] else str(a + b)
        rows.append({"prompt": render_prompt(QUESTIONS[k].format(a=a, b=b)), "completion": " " + answer})
    return rows


def wrong_sum(a: int, b: int, rng: random.Random) -> int:
    """A plausible mistake: off by 1, 2 or 10 (a dropped carry), never negative, never the right sum."""
    c = a + b
    for _ in range(10):
        w = c + rng.choice((-10, -2, -1, 1, 2, 10))
        if w >= 0:
            return w
    return c + 1


def dpo_pairs(pairs: list[tuple[int, int]], n: int, spec: TaskSpec, seed: int) -> list[dict[str, str]]:
    """{"prompt", "chosen", "rejected"}: chosen is right and formatted; rejected breaks the format."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.choice(pairs)
        rejected = wrong_sum(a, b, rng) if rng.random() < spec.wrong_fraction else a + b
        prompt = render_prompt(question(a, b, rng))  # drawn after `rejected`: the order fixes the data set
        rows.append({"prompt": prompt, "chosen": " " + FORMAT.format(a + b), "rejected": f" {rejected}"})
    return rows


def eval_prompts(pairs: list[tuple[int, int]], n: int, seed: int) -> list[tuple[str, int]]:
    """Up to `n` distinct (prompt, expected sum) from `pairs`, phrased like the training questions."""
    rng = random.Random(seed)
    chosen = rng.sample(pairs, min(n, len(pairs)))
    return [(render_prompt(question(a, b, rng)), a + b) for a, b in chosen]


def grade(completion: str, expected: int) -> tuple[bool, bool]:
    """(correct, formatted) of one generated answer.

    formatted: the whole answer is exactly "The answer is N." (N any number). correct: the first number in the
    answer is `expected`, whatever the wording, so the two parts of the metric can be reported apart.
    """
    text = completion.strip()
    formatted = _FORMATTED.match(text) is not None
    number = _NUMBER.search(text)
    return number is not None and int(number.group()) == expected, formatted
