"""Output is data, not markup: what a document says is shown as the text it is, in the page and in the terminal.

A passage, a class name in a model card or a generated completion can hold anything: Markdown images that fetch a
tracking URL when rendered, `<img onerror=...>`, `[click](javascript:...)`, or ANSI escapes that rewrite a
terminal's title or hide lines. Artefacts keep the text as it is; these functions make it inert where it is shown
(every demo's Markdown/HTML, every terminal print of model or document text).
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


class BadImage(ValueError):
    """An upload a demo explains to the user (too large, truncated, not an image) instead of processing."""


UNREADABLE = (OSError, SyntaxError, ValueError)
"""What PIL raises for a file it cannot decode: not an image, truncated or damaged."""


def open_image(value, max_pixels: int = 40_000_000):
    """An image input -> a decoded PIL image, or BadImage with a message for the page. `value`: a path, gradio's
    undecoded upload (a dict with its path), a numpy array or a PIL image. The size is checked from the header,
    before decoding, so a decompression bomb costs nothing."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    if isinstance(value, dict):  # gradio's FileData: the upload, moved into gradio's cache
        value = value.get("path")
    if value is None:
        raise BadImage("No image: upload one or pick an example.")
    if isinstance(value, np.ndarray):
        value = Image.fromarray(value)
    name = "the image" if isinstance(value, Image.Image) else Path(value).name
    try:
        image = value if isinstance(value, Image.Image) else Image.open(value)  # lazy: the header only
    except Image.DecompressionBombError:  # PIL's own limit: refused from the header too
        raise BadImage(f"{name} is too large; the limit is {max_pixels:,} pixels.") from None
    except UNREADABLE:
        raise BadImage(f"{name} is not an image file PIL can read (PNG, JPEG, BMP, WebP, ...).") from None
    width, height = image.size
    if width * height > max_pixels:
        raise BadImage(f"{name} is {width}x{height} pixels; the limit is {max_pixels:,} pixels.")
    try:
        image.load()
    except (*UNREADABLE, Image.DecompressionBombError):
        raise BadImage(f"{name} is truncated or damaged: PIL could not decode it.") from None
    return image
