"""Reading lessons: their Python blocks and the output shown under them, their links, their interview questions.

A lesson is Markdown. Its ```python blocks run in order in one namespace, like notebook cells, so a later block
may use what an earlier one defined. A block that needs a GPU says so in its fence, ```python gpu, and is skipped
on machines without CUDA; a block that shows what happens *without* one (a warning, a fallback) says so with
```python cpu, and is skipped where CUDA is available. Nothing else may be skipped.

A ```text block that follows a python block with nothing but blank lines between them is that block's expected
output (see `coursekit.outputs` for how they compare); a text block after prose is an illustration (a formula, an
excerpt) and is not checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

COURSE_DIR = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<code>.*?)^```\s*$", re.S | re.M)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
QUESTION = re.compile(r"^### (?P<number>\d+)\. (?P<text>.+)$", re.M)
# A link to a Python file followed by a backticked name, `[x.py](path/x.py) `name``, also written with the name in
# parentheses or after a colon: the name is something that file defines (`Class.method` names a method of it).
CODE_NAME_LINK = re.compile(
    r"(?<!!)\[[^\]]*\]\((?P<target>[^)\s#]+\.py)(?:#[^)\s]*)?\)(?:[ \t]*\(|:)?[ \t]*`(?P<name>[A-Za-z_][\w.]*)`"
)
# The same claim made by the link text itself: [`name`](path/x.py).
NAMED_CODE_LINK = re.compile(r"(?<!!)\[`(?P<name>[A-Za-z_][\w.]*)`\]\((?P<target>[^)\s#]+\.py)(?:#[^)\s]*)?\)")
# A picture the lesson's own code draws: ![what it shows](figures/name.png), saved by a block to figures/name.png.
FIGURE = re.compile(r"!\[[^\]]*\]\((?P<target>figures/[^)\s]+\.png)\)")


@dataclass
class Block:
    code: str
    line: int
    """1-based line of the opening fence, for error messages."""
    needs_gpu: bool
    cpu_only: bool = False
    """Shows behaviour without CUDA: skipped where CUDA is available."""
    expected: str | None = None
    """The text block right under it: what it must print. None: its output is not checked."""
    expected_line: int = 0
    """1-based line of the expected output's opening fence."""


def lesson_files(course_dir: Path = COURSE_DIR) -> list[Path]:
    return sorted(course_dir.glob("day[0-9][0-9]_*.md"))


def python_blocks(text: str) -> list[Block]:
    blocks = []
    fences = list(FENCE.finditer(text))
    for match, after in zip(fences, [*fences[1:], None], strict=True):  # each fence and the one after it
        words = match["info"].strip().split()
        if words and words[0] in ("python", "py"):
            block = Block(match["code"], line_of(text, match.start()), "gpu" in words[1:], "cpu" in words[1:])
            if after and after["info"].strip() == "text" and not text[match.end() : after.start()].strip():
                block.expected, block.expected_line = after["code"], line_of(text, after.start())
            blocks.append(block)
    return blocks


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def relative_links(text: str) -> list[str]:
    """Link targets that point into the repository (not URLs, not in-page anchors), code blocks excluded."""
    prose = FENCE.sub("", text)
    targets = (m["target"] for m in LINK.finditer(prose))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def code_name_links(text: str) -> list[tuple[str, str, int]]:
    """(target, name, line) for each link to a .py file that names something in it, by a backticked name after the
    link or as the link's text; code blocks excluded."""
    prose = FENCE.sub(lambda m: "\n" * m.group().count("\n"), text)  # keep line numbers
    found = [*CODE_NAME_LINK.finditer(prose), *NAMED_CODE_LINK.finditer(prose)]
    links = [(m["target"], m["name"], line_of(prose, m.start())) for m in sorted(found, key=lambda m: m.start())]
    return [link for link in links if not link[1].endswith(".py")]  # [`data.py`](data.py) names only the file


def figure_links(text: str) -> list[str]:
    """The figures/*.png pictures a lesson embeds (outside code blocks), in order; its blocks must draw each one."""
    return [m["target"] for m in FIGURE.finditer(FENCE.sub("", text))]


def defines(source: str, name: str) -> bool:
    """Whether Python `source` defines `name` (`def`, `class`, or an assignment at any indent); for `A.b`, that it
    defines class A and, after it, b."""
    *owners, last = name.split(".")
    start = 0
    for owner in owners:
        found = re.search(rf"^\s*class {re.escape(owner)}\b", source[start:], re.M)
        if not found:
            return False
        start += found.end()
    pattern = rf"^\s*(?:async\s+def|def|class)\s+{re.escape(last)}\b|^\s*{re.escape(last)}\s*(?::[^=\n]*)?=(?!=)"
    return re.search(pattern, source[start:], re.M) is not None


def questions(text: str) -> list[tuple[int, str, str]]:
    """(number, question, answer) for each `### N. question` heading; the answer runs to the next heading."""
    found = list(QUESTION.finditer(text))
    out = []
    for i, match in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(text)
        answer = re.split(r"^#{1,3} ", text[match.end() : end], flags=re.M)[0].strip()
        out.append((int(match["number"]), match["text"].strip(), answer))
    return out
