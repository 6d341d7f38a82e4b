"""Reading lessons: their Python blocks, their relative links and their interview questions.

A lesson is Markdown. Its ```python blocks run in order in one namespace, like notebook cells, so a later block
may use what an earlier one defined. A block that needs a GPU says so in its fence, ```python gpu, and is skipped
on machines without CUDA; nothing else may be skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

COURSE_DIR = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<code>.*?)^```\s*$", re.S | re.M)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
QUESTION = re.compile(r"^### (?P<number>\d+)\. (?P<text>.+)$", re.M)


@dataclass
class Block:
    code: str
    line: int
    """1-based line of the opening fence, for error messages."""
    needs_gpu: bool


def lesson_files(course_dir: Path = COURSE_DIR) -> list[Path]:
    return sorted(course_dir.glob("day[0-9][0-9]_*.md"))


def python_blocks(text: str) -> list[Block]:
    blocks = []
    for match in FENCE.finditer(text):
        words = match["info"].strip().split()
        if words and words[0] in ("python", "py"):
            line = text.count("\n", 0, match.start()) + 1
            blocks.append(Block(match["code"], line, "gpu" in words[1:]))
    return blocks


def relative_links(text: str) -> list[str]:
    """Link targets that point into the repository (not URLs, not in-page anchors), code blocks excluded."""
    prose = FENCE.sub("", text)
    targets = (m["target"] for m in LINK.finditer(prose))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def questions(text: str) -> list[tuple[int, str, str]]:
    """(number, question, answer) for each `### N. question` heading; the answer runs to the next heading."""
    found = list(QUESTION.finditer(text))
    out = []
    for i, match in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(text)
        answer = re.split(r"^#{1,3} ", text[match.end() : end], flags=re.M)[0].strip()
        out.append((int(match["number"]), match["text"].strip(), answer))
    return out
