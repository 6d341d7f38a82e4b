"""Every README's reading order points at real lines: a link `[...](path.py#L10-L40)` followed on its line by a
backticked name must land on a range of that file that holds the name, so the order cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
READMES = sorted(p for p in (ROOT / "projects").glob("*/README.md"))
LINK = re.compile(r"\]\(([^)#\s]+\.py)#L(\d+)-L(\d+)\)[^`\n]*`([A-Za-z_][\w.]*)`")


def line_links(readme: Path) -> list[tuple[str, int, int, str]]:
    return [(m[1], int(m[2]), int(m[3]), m[4]) for m in LINK.finditer(readme.read_text(encoding="utf-8"))]


@pytest.mark.parametrize("readme", READMES, ids=[p.parent.name for p in READMES])
def test_reading_order_links_point_at_the_code_they_name(readme):
    assert "## Reading order" in readme.read_text(encoding="utf-8"), f"{readme} has no reading order"
    links = line_links(readme)
    assert links, f"{readme}: the reading order has no line links"
    for target, start, end, name in links:
        path = (readme.parent / target).resolve()
        assert path.is_file(), f"{readme.name}: {target} does not exist"
        lines = path.read_text(encoding="utf-8").splitlines()
        assert 1 <= start <= end <= len(lines), f"{target}#L{start}-L{end}: the file has {len(lines)} lines"
        chunk = "\n".join(lines[start - 1 : end])
        assert re.search(rf"\b{re.escape(name.split('.')[-1])}\b", chunk), f"{target}#L{start}-L{end} lacks {name}"


def test_the_link_pattern_reads_the_documented_form(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("1. [train.py, the loop](src/x/train.py#L12-L40): `train`, written out\n", encoding="utf-8")
    assert line_links(readme) == [("src/x/train.py", 12, 40, "train")]
