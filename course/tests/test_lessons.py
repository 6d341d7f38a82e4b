"""Every lesson stays true: its code runs (offline, CPU, in order, a process per file) and prints what the lesson
shows, its links resolve and name code that exists, its interview has 20 Q&As."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from coursekit.lessons import (
    COURSE_DIR,
    code_name_links,
    defines,
    figure_links,
    lesson_files,
    python_blocks,
    questions,
    relative_links,
)
from coursekit.runner import lesson_failures, record_outputs

LESSONS = lesson_files()
INTERVIEWS = [p for p in LESSONS if p.stem.endswith("_interview")]
DAYS = sorted({int(p.name[3:5]) for p in LESSONS})


LESSON_ONLY_DAYS = {38}  # time series: no capstone applies it; the forecaster is written in the lesson (issue 20)
MAX_FIGURE_BYTES = 250_000  # a lesson's picture is a small PNG, not a photograph


@pytest.fixture(scope="session")
def lesson_runs(request, tmp_path_factory, lesson_pool):
    """Every selected lesson file submitted at once to the session's lesson servers (`lesson_pool`,
    `--lesson-workers`): the tests read the results in order while the next files already run. Each file runs in a
    folder of its own."""
    selected = [
        item.callspec.params["path"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_every_python_block_runs"
    ]
    root = tmp_path_factory.mktemp("lessons")
    return {path: (lesson_pool.submit(path, root / path.stem), root / path.stem) for path in selected}


@pytest.mark.parametrize("path", LESSONS, ids=[p.name for p in LESSONS])
def test_every_python_block_runs(path, lesson_runs, request):
    future, workdir = lesson_runs[path]
    runs = future.result()
    if request.config.getoption("--update-outputs"):  # course/tests/conftest.py
        record_outputs(path, runs)
    failures = lesson_failures(path, runs)
    assert not failures, "\n\n".join(failures)
    # the pictures the lesson embeds are drawn by its own blocks, this run, and committed beside it
    for target in figure_links(path.read_text(encoding="utf-8")):
        drawn, committed = workdir / target, COURSE_DIR / target
        assert drawn.is_file(), f"{path.name} embeds {target} but no block saved it"
        if request.config.getoption("--update-figures"):  # course/tests/conftest.py
            committed.parent.mkdir(exist_ok=True)
            shutil.copyfile(drawn, committed)
        assert committed.is_file(), f"{target} is not committed: rerun with --update-figures"
        assert committed.stat().st_size <= MAX_FIGURE_BYTES, f"{target} is over {MAX_FIGURE_BYTES:,} bytes"


REPO = COURSE_DIR.parent
READMES = [COURSE_DIR / "README.md", REPO / "README.md", *sorted(REPO.glob("projects/*/README.md"))]


@pytest.mark.parametrize("path", [*LESSONS, *READMES], ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(path):
    missing = []
    for target in relative_links(path.read_text(encoding="utf-8")):
        file = target.split("#")[0]
        if file and not (path.parent / file).exists():
            missing.append(target)
    assert not missing, f"{path.name} links to missing files: {missing}"


# The projects' READMEs link code with line ranges and a name the range uses; shared/tests/test_readmes.py checks them.
@pytest.mark.parametrize(
    "path", [*LESSONS, COURSE_DIR / "README.md", REPO / "README.md"], ids=lambda p: str(p.relative_to(REPO))
)
def test_links_to_code_name_what_the_file_defines(path):
    stale = []
    for target, name, line in code_name_links(path.read_text(encoding="utf-8")):
        file = path.parent / target
        if file.is_file() and not defines(
            file.read_text(encoding="utf-8"), name
        ):  # a missing file is the test above's failure
            stale.append(f"line {line}: {target} has no `{name}`")
    assert not stale, f"{path.name} names code that is not there: {stale}"


@pytest.mark.parametrize("path", INTERVIEWS, ids=[p.name for p in INTERVIEWS])
def test_interview_has_exactly_20_answered_questions(path):
    found = questions(path.read_text(encoding="utf-8"))
    assert [n for n, _, _ in found] == list(range(1, 21)), f"{path.name}: questions must be numbered 1..20"
    for number, question, answer in found:
        assert len(answer.split()) >= 40, f"{path.name} Q{number} ({question!r}) needs a real answer"


@pytest.mark.parametrize("day", DAYS)
def test_each_day_has_three_parts_that_link_to_the_capstones(day):
    files = [p for p in LESSONS if p.name.startswith(f"day{day:02d}_")]
    kinds = sorted(
        "interview" if p.stem.endswith("_interview") else "part1" if p.stem.endswith("_part1") else "core"
        for p in files
    )
    assert kinds == ["core", "interview", "part1"], [p.name for p in files]
    core = next(p for p in files if not re.search(r"_(part1|interview)$", p.stem))
    assert day in LESSON_ONLY_DAYS or any(
        t.startswith(("../projects/", "../shared/")) for t in relative_links(core.read_text(encoding="utf-8"))
    ), f"{core.name} should link to the capstone code that applies its idea"
    assert f"]({core.name})" in (COURSE_DIR / "README.md").read_text(encoding="utf-8"), (
        f"course/README.md should list {core.name}"
    )


def test_the_snippet_runner_sees_gpu_marks_and_skips_nothing_else():
    text = "x\n```python\na = 1\n```\n```python gpu\nb = 2\n```\n```bash\nls\n```\n"
    blocks = python_blocks(text)
    assert [(b.code, b.needs_gpu, b.line) for b in blocks] == [("a = 1\n", False, 2), ("b = 2\n", True, 5)]
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # the root conftest's offline guard applies here too
