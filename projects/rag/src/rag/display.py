"""Output is data, not markup: what a document says is shown as the text it is, in the page and in the terminal.

A passage can hold anything its author typed: Markdown images that fetch a tracking URL when rendered,
`<img onerror=...>`, `[click](javascript:...)`, or ANSI escapes that rewrite a terminal's title or hide lines.
The index stores the text as it is (answers quote it exactly); these functions make it inert where it is shown.
"""

from __future__ import annotations

import html
import re
import string

# CSI sequences (colours, cursor moves), OSC sequences (window title, hyperlinks), and two-byte escapes
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # every C0/C1 control but tab and newline
_MARKDOWN = {c: "\\" + c for c in string.punctuation} | {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def terminal_text(text: str) -> str:
    """`text` without escape sequences or control characters (tab and newline kept)."""
    return CONTROL.sub("", ANSI.sub("", text))


def markdown_text(text: str) -> str:
    """Markdown that renders exactly as `text`: CommonMark lets any ASCII punctuation be backslash-escaped, so
    none of it can start an image, a link, an autolink, emphasis or a heading; `& < >` become HTML entities.
    Leading spaces go: four of them would make a code block, which shows the backslashes."""
    lines = terminal_text(text).split("\n")
    return "\n".join("".join(_MARKDOWN.get(c, c) for c in line.lstrip()) for line in lines)


def inline_html(text: str) -> str:
    """`text` as HTML inside a tag: escaped, on one line (a blank line would end the HTML block in Markdown)."""
    return html.escape(" ".join(terminal_text(text).split()))


def block_html(text: str) -> str:
    """`text` as HTML inside <pre>, where Markdown is not read and line breaks stay."""
    return html.escape(terminal_text(text))
