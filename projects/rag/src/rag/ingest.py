"""Reading documents and cutting them into chunks (day 36).

A chunk is a character span [start, end) of one document, so chunks can be cited by line and, together, cover
every character of the document (a test checks it). Chunks never cross a Markdown heading: a section is the unit
a reader would cite. Inside a section, whole lines are packed up to a token budget; consecutive chunks overlap by
a few lines so that a sentence cut at a boundary is whole in one of them. A line longer than the budget is cut at
word boundaries.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".rst"}
PDF_SUFFIXES = {".pdf"}
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


@dataclass
class Chunk:
    file: str
    """Path relative to the indexed folder."""
    heading: str
    """Heading path, e.g. "README > Results"."""
    start: int
    end: int
    """Character span [start, end) in the document."""
    line_start: int
    line_end: int
    """1-based, inclusive line range."""
    text: str

    def to_dict(self) -> dict:
        return asdict(self)


def embedding_text(chunk: dict) -> str:
    """What the model embeds: the heading path gives a passage its context ("Results" of which project?)."""
    return f"{chunk['heading']}\n{chunk['text']}" if chunk["heading"] else chunk["text"]


SKIP_FOLDERS = {".venv", "node_modules", "runs", "__pycache__", "site-packages"}
MB = 2**20


def find_documents(folder: Path, max_bytes: int = 10 * MB) -> tuple[list[Path], list[tuple[str, str]]]:
    """Markdown, text and PDF files under `folder` that are safe to read, and (name, why) for those skipped.

    Only regular files that resolve inside `folder` are read: a link to a file elsewhere (a key, a password file)
    would otherwise be indexed and quoted in answers, and a linked folder is listed, never entered. Files over
    `max_bytes` are skipped rather than read into memory. Hidden folders, virtual envs and run outputs are left out.
    """
    root = folder.resolve()
    files, skipped = [], []

    def unlistable(err: OSError) -> None:
        skipped.append((Path(err.filename).relative_to(folder).as_posix() + "/", "cannot be listed"))

    for here, dirs, names in os.walk(folder, onerror=unlistable):  # followlinks=False: linked folders stay shut
        here = Path(here)
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in SKIP_FOLDERS]
        for name in dirs:
            if (here / name).is_symlink():
                skipped.append(((here / name).relative_to(folder).as_posix() + "/", "a linked folder, not followed"))
        for name in names:
            path = here / name
            if path.suffix.lower() not in TEXT_SUFFIXES | PDF_SUFFIXES:
                continue
            why = _unsafe(path, root, max_bytes)
            if why:
                skipped.append((path.relative_to(folder).as_posix(), why))
            else:
                files.append(path)
    return sorted(files), sorted(skipped)


def _unsafe(path: Path, root: Path, max_bytes: int) -> str | None:
    """Why `path` must not be read, or None."""
    try:
        target = path.resolve(strict=True)
        info = target.stat()
    except (OSError, RuntimeError):  # a dangling link, a link loop, no permission
        return "cannot be opened"
    if not target.is_relative_to(root):
        return "a link to a file outside the folder, not followed"
    if not stat.S_ISREG(info.st_mode):  # a FIFO or a device would block or never end
        return "not a regular file"
    if info.st_size > max_bytes:
        return f"{info.st_size / MB:.3g} MB, over the {max_bytes / MB:.3g} MB limit (--max-file-mb)"
    return None


def read_document(path: Path, max_bytes: int = 10 * MB) -> str | None:
    """The text of a document, or None (with a warning) when it is binary, undecodable or an unreadable PDF."""
    try:
        if path.suffix.lower() in PDF_SUFFIXES:
            from pypdf import PdfReader

            return "\n\n".join(page.extract_text() or "" for page in PdfReader(path).pages)
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)  # a file that grew since it was listed is still read no further
        if len(data) > max_bytes:
            raise ValueError(f"over the {max_bytes / MB:.3g} MB limit (--max-file-mb)")
        if b"\x00" in data[:8192]:
            raise ValueError("looks binary (NUL bytes)")
        return data.decode("utf-8")
    except Exception as err:  # one bad file must not cost the rest of the index
        warnings.warn(f"skipped {path}: {err}", stacklevel=2)
        return None


def file_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _lines_with_offsets(text: str) -> list[tuple[int, str]]:
    offsets, position = [], 0
    for line in text.splitlines(keepends=True):
        offsets.append((position, line))
        position += len(line)
    return offsets


def _sections(text: str, title: str) -> list[tuple[str, list[tuple[int, str]]]]:
    """Split into (heading path, lines) at Markdown headings outside code fences."""
    sections: list[tuple[str, list]] = [(title, [])]
    stack: list[tuple[int, str]] = []
    in_fence = False
    for offset, line in _lines_with_offsets(text):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        match = None if in_fence else HEADING.match(line.rstrip("\n"))
        if match:
            level = len(match[1])
            stack = [(lvl, name) for lvl, name in stack if lvl < level] + [(level, match[2])]
            sections.append((" > ".join([title, *(name for _, name in stack)]), []))
        sections[-1][1].append((offset, line))
    sections = [(heading, lines) for heading, lines in sections if lines]
    if len(sections) > 1 and not "".join(line for _, line in sections[0][1]).strip():
        (_, blank), (heading, lines) = sections[0], sections[1]
        sections[:2] = [(heading, blank + lines)]  # leading blank lines join the first heading
    return sections


def _pieces(lines: list[tuple[int, str]], count: Callable[[str], int], budget: int) -> list[tuple[int, str, int]]:
    """Lines as (offset, text, tokens); a line over budget is cut at whitespace into pieces within budget."""
    pieces = []
    for offset, line in lines:
        tokens = count(line)
        if tokens <= budget:
            pieces.append((offset, line, tokens))
            continue
        words = re.findall(r"\S+\s*|\s+", line)
        current, start = "", offset
        for word in words:
            if current and count(current + word) > budget:
                pieces.append((start, current, count(current)))
                start, current = start + len(current), ""
            current += word
        if current:
            pieces.append((start, current, count(current)))
    return pieces


def chunk_document(
    text: str, file: str, count: Callable[[str], int], budget: int = 160, overlap: int = 32
) -> list[Chunk]:
    """Cut one document into chunks of at most ~`budget` tokens that overlap by ~`overlap` tokens."""
    line_starts = [offset for offset, _ in _lines_with_offsets(text)]
    title = str(Path(file).with_suffix(""))  # "projects/classifier/README": tells the embedding whose README

    def line_of(position: int) -> int:  # 1-based line holding character `position`
        lo, hi = 0, len(line_starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if line_starts[mid] <= position else (lo, mid - 1)
        return lo + 1

    chunks = []
    for heading, lines in _sections(text, title):
        pieces = _pieces(lines, count, budget)
        i = 0
        while i < len(pieces):
            j, tokens = i, 0
            while j < len(pieces) and (j == i or tokens + pieces[j][2] <= budget):
                tokens += pieces[j][2]
                j += 1
            start, end = pieces[i][0], pieces[j - 1][0] + len(pieces[j - 1][1])
            chunk_text = text[start:end]
            if chunk_text.strip():
                first_line, last_line = line_of(start), line_of(max(start, end - 1))
                chunks.append(Chunk(file, heading, start, end, first_line, last_line, chunk_text))
            if j == len(pieces):
                break
            back, kept = j, 0  # step back over whole pieces worth ~`overlap` tokens, always moving forward
            while back - 1 > i and kept + pieces[back - 1][2] <= overlap:
                back -= 1
                kept += pieces[back][2]
            i = back
    return chunks
