"""Comparing what a block printed with the ```text block the lesson shows under it.

The rules, which course/README.md states for lesson writers:

- Lines compare exactly, except trailing spaces and blank lines at the end of the output.
- A line that is exactly `...` matches any number of lines (none included); `...` inside a line matches any
  characters within that line (doctest's ELLIPSIS). They mark what depends on the machine: timings, throughput,
  addresses, data pointers.
- Numbers compare as numbers. An integer (no point, no exponent) must print identically. A float matches if it
  is within a relative 1e-3 of the expected value (or an absolute 1e-9, for values at zero): 0.2458 against 0.2459
  passes, 0.0426 against 0.0427 fails, 97.2% against 97.3% fails. Float rounding that flips the 4th significant
  digit passes; a changed result does not.
"""

from __future__ import annotations

import difflib
import math
import re
from functools import cache

REL_TOL = 1e-3
ABS_TOL = 1e-9
ELLIPSIS = "..."
# A number that is not part of a word (x1, fc2 and float32 stay text): optional minus, digits with an optional
# fraction, an optional exponent.
NUMBER = r"(?<![\w.])-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.])"
NUMBER_RE = re.compile(NUMBER)


def is_integer(token: str) -> bool:
    return re.fullmatch(r"-?\d+", token) is not None


def numbers_match(expected: str, got: str) -> bool:
    if is_integer(expected) or is_integer(got):  # counts, shapes, indices, seeds: exact
        return expected == got
    return math.isclose(float(expected), float(got), rel_tol=REL_TOL, abs_tol=ABS_TOL)


@cache
def line_pattern(expected: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """A regex for one expected line: its text literal, `...` as any characters, each number as a number; and the
    expected numbers, in order, that the captured ones are compared with."""
    parts, numbers = [], []
    for i, chunk in enumerate(expected.split(ELLIPSIS)):
        if i:
            parts.append(".*?")
        pos = 0
        for match in NUMBER_RE.finditer(chunk):
            parts.append(re.escape(chunk[pos : match.start()]))
            parts.append(f"({NUMBER})")
            numbers.append(match.group())
            pos = match.end()
        parts.append(re.escape(chunk[pos:]))
    return re.compile("".join(parts)), tuple(numbers)


def line_matches(expected: str, got: str) -> bool:
    if expected == got:
        return True
    pattern, numbers = line_pattern(expected)
    found = pattern.fullmatch(got)
    return found is not None and all(numbers_match(e, g) for e, g in zip(numbers, found.groups(), strict=True))


def normalise(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def output_matches(expected: str, got: str) -> bool:
    """Whether `got` (what a block printed) matches `expected` (the text block), by the rules above."""
    want, have = normalise(expected), normalise(got)
    # rest[j]: does want[i:] match have[j:]? Filled for i from the end, as a table rather than by recursion, so that
    # long outputs cannot hit the recursion limit.
    rest = [j == len(have) for j in range(len(have) + 1)]
    for i in reversed(range(len(want))):
        row = [False] * (len(have) + 1)
        for j in reversed(range(len(have) + 1)):
            if want[i] == ELLIPSIS:  # match no line here, or swallow have[j] and try again
                row[j] = rest[j] or (j < len(have) and row[j + 1])
            else:
                row[j] = j < len(have) and rest[j + 1] and line_matches(want[i], have[j])
        rest = row
    return rest[0]


def output_diff(expected: str, got: str, name: str) -> str:
    """A unified diff, expected (the lesson's text block) against got (what the code printed). A printed line that
    matches the expected line it is paired with (by `...` or within tolerance) is shown as the expected line, so
    the diff marks only the lines that really differ."""
    want, have = normalise(expected), normalise(got)
    shown = list(have)
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, want, have, autojunk=False).get_opcodes():
        if tag == "replace":
            for i, j in zip(range(i1, i2), range(j1, j2), strict=False):  # pair the lines of a replaced run
                if line_matches(want[i], have[j]):
                    shown[j] = want[i]
    lines = difflib.unified_diff(want, shown, f"{name} (expected, the lesson)", f"{name} (got, the code)", lineterm="")
    return "\n".join(lines)


def refreshed_line(expected: str, got: str) -> str | None:
    """`expected` with its numbers replaced by the ones `got` prints in their places, its text and `...` kept; None
    when `got` has another shape (other text, other number count)."""
    pattern, _ = line_pattern(expected)
    found = pattern.fullmatch(got)
    if found is None:
        return None
    numbers = iter(found.groups())
    chunks = [NUMBER_RE.sub(lambda _: next(numbers), chunk) for chunk in expected.split(ELLIPSIS)]
    return ELLIPSIS.join(chunks)


def refreshed_output(expected: str, got: str) -> str:
    """The text block to record for a block that printed `got`: `expected`'s lines with `got`'s numbers, keeping
    the `...` marks, when the two have the same shape line for line; else `got` as it is (its machine-dependent
    parts then need marking by hand, and the next run says where)."""
    want, have = normalise(expected), normalise(got)
    # fits[i][j]: can want[i:] take the shape of have[j:]? The table of `output_matches`, numbers left free.
    fits = [[False] * (len(have) + 1) for _ in range(len(want) + 1)]
    fits[len(want)][len(have)] = True
    for i in reversed(range(len(want))):
        for j in reversed(range(len(have) + 1)):
            if want[i] == ELLIPSIS:
                fits[i][j] = fits[i + 1][j] or (j < len(have) and fits[i][j + 1])
            else:
                fits[i][j] = j < len(have) and fits[i + 1][j + 1] and refreshed_line(want[i], have[j]) is not None
    if not fits[0][0]:
        return "\n".join(have) + "\n"
    lines, j = [], 0
    for i, line in enumerate(want):
        if line == ELLIPSIS:  # swallow got lines until the rest fits again
            j = next(k for k in range(j, len(have) + 1) if fits[i + 1][k])
            lines.append(line)
        else:
            lines.append(refreshed_line(line, have[j]))
            j += 1
    return "\n".join(lines) + "\n"
