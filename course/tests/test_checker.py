"""The checker itself: it must catch a wrong expected output (with file, line and diff), honour `...` and the float
tolerance both ways, keep lesson files from seeing each other's global state and the machine's CPU, re-record
outputs without losing their `...` marks, and catch a stale code name."""

from __future__ import annotations

import platform
import re
from pathlib import Path

import pytest

from coursekit.lessons import COURSE_DIR, code_name_links, defines, figure_links, python_blocks
from coursekit.outputs import output_matches, refreshed_output
from coursekit.runner import check_lesson, record_outputs

FENCE = "```"


def lesson(*cells: tuple[str, str | None]) -> str:
    """A small lesson: each cell is python code and the text block under it (None: no text block)."""
    parts = ["# A lesson\n\nSome prose.\n"]
    for code, output in cells:
        parts.append(f"{FENCE}python\n{code}{FENCE}\n")
        if output is not None:
            parts.append(f"\n{FENCE}text\n{output}{FENCE}\n")
        parts.append("\nMore prose.\n")
    return "\n".join(parts)


def test_expected_output_is_the_text_block_right_under_a_python_block():
    text = (
        f"{FENCE}python\nprint(1)\n{FENCE}\n\n{FENCE}text\n1\n{FENCE}\n\nProse.\n\n{FENCE}text\nnot output\n{FENCE}\n"
    )
    text += f"{FENCE}python\nx = 2\n{FENCE}\nProse between.\n{FENCE}text\na formula\n{FENCE}\n"
    first, second = python_blocks(text)
    assert (first.expected, first.expected_line) == ("1\n", 5)
    assert second.expected is None  # prose between: an illustration, not output


def test_cpu_marks_a_block_that_shows_the_machine_without_a_gpu():
    text = f"{FENCE}python cpu\nprint('no GPU')\n{FENCE}\n{FENCE}python gpu\nx = 1\n{FENCE}\n"
    assert [(b.cpu_only, b.needs_gpu) for b in python_blocks(text)] == [(True, False), (False, True)]


def test_a_planted_mismatch_fails_with_file_line_and_diff(tmp_path, lesson_pool):
    path = tmp_path / "day99_planted.md"
    path.write_text(
        lesson(("x = 6 * 7\n", None), ("print('answer', x)\nprint('done')\n", "answer 41\ndone\n")), encoding="utf-8"
    )
    failures = check_lesson(path, tmp_path, lesson_pool)
    assert len(failures) == 1
    message = failures[0]
    block_line = python_blocks(path.read_text(encoding="utf-8"))[1].line
    assert f"day99_planted.md, block at line {block_line}" in message
    assert "-answer 41" in message and "+answer 42" in message and " done" in message  # a unified diff
    assert "--- day99_planted.md" in message and "+++ day99_planted.md" in message


def test_a_copy_of_a_real_lesson_with_one_expected_digit_changed_fails(tmp_path, lesson_pool):
    real = COURSE_DIR / "day01_tensors_interview.md"
    block = next(
        b for b in python_blocks(real.read_text(encoding="utf-8")) if b.expected and re.search(r"\d", b.expected)
    )
    digit = re.search(r"\d", block.expected)
    wrong = block.expected[: digit.start()] + str((int(digit[0]) + 1) % 10) + block.expected[digit.end() :]
    lines = real.read_text(encoding="utf-8").splitlines(keepends=True)
    start = block.expected_line  # the opening fence; the output starts on the next line
    text = "".join(lines[:start]) + "".join(lines[start:]).replace(block.expected, wrong, 1)
    copy = tmp_path / real.name
    copy.write_text(text, encoding="utf-8")
    assert check_lesson(real, tmp_path, lesson_pool) == []
    failures = check_lesson(copy, tmp_path, lesson_pool)
    assert len(failures) == 1, failures
    assert failures[0].startswith(f"{real.name}, block at line {block.line}: output differs from line {start}")
    changed_line = wrong.splitlines()[block.expected.count("\n", 0, digit.start())]
    assert f"\n-{changed_line.rstrip()}\n" in failures[0]  # the diff shows the planted line as expected, not got


def test_a_block_that_raises_fails_and_stops_the_file(tmp_path, lesson_pool):
    path = tmp_path / "broken.md"
    path.write_text(
        lesson(("raise ValueError('planted')\n", None), ("print('never')\n", "something else\n")), encoding="utf-8"
    )
    failures = check_lesson(path, tmp_path, lesson_pool)
    assert len(failures) == 1 and "ValueError: planted" in failures[0] and "failed" in failures[0]


def test_global_state_set_by_one_file_does_not_reach_the_next(tmp_path, lesson_pool):
    changes = lesson(
        (
            "import warnings, torch\n"
            "warnings.simplefilter('error')\n"
            "torch.set_num_threads(1)\n"
            "torch.use_deterministic_algorithms(True)\n"
            "torch.set_default_dtype(torch.float64)\n"
            "torch.set_grad_enabled(False)\n"
            "torch.backends.cudnn.benchmark = True\n"
            "torch.backends.mkldnn.enabled = False\n",
            None,
        )
    )
    reads = lesson(
        (
            "import warnings, torch\n"
            "print(warnings.filters[0][0], torch.get_num_threads())\n"
            "print(torch.are_deterministic_algorithms_enabled(), torch.get_default_dtype(), torch.is_grad_enabled())\n"
            "print(torch.backends.cudnn.benchmark, torch.backends.mkldnn.enabled)\n",
            None,
        )
    )
    (tmp_path / "a.md").write_text(changes, encoding="utf-8")
    (tmp_path / "b.md").write_text(reads, encoding="utf-8")
    before = lesson_pool.submit(tmp_path / "b.md", tmp_path).result()[0].stdout
    assert lesson_pool.submit(tmp_path / "a.md", tmp_path).result()[0].error is None
    after = lesson_pool.submit(tmp_path / "b.md", tmp_path).result()[0].stdout
    assert after == before
    assert "False torch.float32 True" in after and "error" not in after.splitlines()[0]
    assert after.splitlines()[2] == "False True"


def test_the_pool_runs_files_at_once_each_in_its_own_process_and_folder(tmp_path, lesson_pool):
    # each file notes when it starts and ends (sleeping 2 s between): with two workers the two spans overlap
    code = "import os, time\nstart = time.time()\ntime.sleep(2)\nprint(os.getpid(), os.getcwd(), start, time.time())\n"
    for name in ("a", "b"):
        (tmp_path / f"{name}.md").write_text(lesson((code, None)), encoding="utf-8")
    if lesson_pool.workers < 2:
        pytest.skip("--lesson-workers 1: nothing runs at once")
    # first a pair that starts both servers if they are not up (seconds each): a file only overlaps another once
    # both are up
    for future in [lesson_pool.submit(tmp_path / f"{name}.md", tmp_path / f"warm-{name}") for name in ("a", "b")]:
        future.result()
    futures = [lesson_pool.submit(tmp_path / f"{name}.md", tmp_path / f"run-{name}") for name in ("a", "b")]
    outputs = [future.result()[0].stdout.split() for future in futures]
    (pid_a, folder_a, start_a, end_a), (pid_b, folder_b, start_b, end_b) = outputs
    assert pid_a != pid_b  # a process each
    assert (Path(folder_a).name, Path(folder_b).name) == ("run-a", "run-b")  # each in the folder it was given
    assert max(float(start_a), float(start_b)) < min(float(end_a), float(end_b)), "they ran one after the other"


@pytest.mark.parametrize(
    ("expected", "got", "matches"),
    [
        ("took ... s\ndone", "took 1.234 s\ndone", True),  # `...` inside a line: any characters
        ("took ... s\ndone", "took 1.234 ms\ndone", False),  # ...but the rest of the line still counts
        ("start\n...\nend", "start\nepoch 1\nepoch 2\nend", True),  # a `...` line: any number of lines
        ("start\n...\nend", "start\nend", True),  # none included
        ("start\n...\nend", "start\nepoch 1\nfinish", False),
        ("a\n...", "a\nb\nc", True),
        ("ptr 0x...", "ptr 0x7f3a2c001040", True),
        ("a", "a\nb", False),  # an extra line is a difference
    ],
)
def test_the_wildcard(expected, got, matches):
    assert output_matches(expected, got) is matches


@pytest.mark.parametrize(
    ("expected", "got", "matches"),
    [
        ("loss 0.2458", "loss 0.2459", True),  # a rounding flip in the 4th significant digit
        ("loss 2.302585", "loss 2.302587", True),
        ("loss 0.0426", "loss 0.0427", False),  # a changed digit of a result
        ("accuracy 97.2%", "accuracy 97.3%", False),
        ("diff 1.5e-08", "diff 3.0e-08", False),  # small numbers are compared relatively, not to an absolute 1e-6
        ("diff 0.0", "diff -0.0", True),
        ("x [1.0000, 2.5000]", "x [1.0001, 2.5000]", True),
        ("steps 100", "steps 101", False),  # integers are exact
        ("steps 100", "steps 100.0", False),
        ("shape (3, 4)", "shape (3, 5)", False),
        ("float32 fc2", "float64 fc2", False),  # digits inside words are text
        ("1.5x faster", "1.5x faster", True),
        ("0.5 and 0.25", "0.5 and 0.26", False),
    ],
)
def test_the_float_tolerance(expected, got, matches):
    assert output_matches(expected, got) is matches


def test_trailing_spaces_and_final_blank_lines_do_not_count():
    assert output_matches("a\nb\n", "a  \nb\n\n\n")
    assert not output_matches("a\n\nb", "a\nb")  # a blank line inside the output does


def test_a_stale_code_name_is_caught(tmp_path, lesson_pool):
    (tmp_path / "train.py").write_text(
        "class Run:\n    def resume(self):\n        pass\n\n\ndef train(cfg):\n    pass\n\nLIMIT: int = 3\n",
        encoding="utf-8",
    )
    text = (
        "The loop is [train.py](train.py) `train`, resumed by [train.py](train.py) (`Run.resume`); "
        "[train.py](train.py): `LIMIT` caps it.\nBut [train.py](train.py) `fit` is gone, and so is "
        "[train.py](train.py) `Run.restart`. Prose naming [train.py](train.py) then `train` is not a name link.\n"
        "The link text can name it too: [`train`](train.py), [`evaluate`](train.py); [`train.py`](train.py) is a file.\n"
    )
    links = code_name_links(text)
    assert [(name, line) for _, name, line in links] == [
        ("train", 1),
        ("Run.resume", 1),
        ("LIMIT", 1),
        ("fit", 2),
        ("Run.restart", 2),
        ("train", 3),
        ("evaluate", 3),
    ]
    source = (tmp_path / "train.py").read_text(encoding="utf-8")
    assert [name for _, name, _ in links if not defines(source, name)] == ["fit", "Run.restart", "evaluate"]


def test_embedded_figures_are_found_outside_code_and_a_block_can_save_them(tmp_path, lesson_pool):
    text = "![curves](figures/a.png) and ![web](https://x.org/b.png)\n"
    text += f"{FENCE}python\nprint('![not prose](figures/c.png)')\n{FENCE}\n"
    assert figure_links(text) == ["figures/a.png"]
    path = tmp_path / "day99_figure.md"
    path.write_text(lesson(("open('figures/a.png', 'wb').write(b'png')\n", None)), encoding="utf-8")
    assert check_lesson(path, tmp_path, lesson_pool) == []
    assert (tmp_path / "figures" / "a.png").read_bytes() == b"png"  # the runner made figures/ in the workdir


@pytest.mark.parametrize(
    ("expected", "got", "recorded"),
    [
        # numbers move, the text and the `...` inside a line stay
        ("epoch 2  loss 1.911  ... s\n", "epoch 2  loss 1.912  3.0 s\n", "epoch 2  loss 1.912  ... s\n"),
        # a line of `...` still swallows what it swallowed, and the lines around it take the new numbers
        ("start 1.5\n...\nend 7\n", "start 1.6\nnoise\nmore noise\nend 8\n", "start 1.6\n...\nend 8\n"),
        # another shape (a line more, other words): recorded as printed, for a person to mark what varies
        ("loss 0.5\n", "loss 0.4\nwarning: slow\n", "loss 0.4\nwarning: slow\n"),
        ("time 3 ... s\n", "duration 3.2 s\n", "duration 3.2 s\n"),
    ],
)
def test_refreshed_output_keeps_the_marks(expected, got, recorded):
    assert refreshed_output(expected, got) == recorded
    assert output_matches(recorded, got)


def test_record_outputs_rewrites_only_the_blocks_that_print_something_else(tmp_path, lesson_pool):
    path = tmp_path / "lesson.md"
    path.write_text(
        lesson(
            ("print('a 1.5', 'took 3 s')\n", "a 1.0 took ... s\n"),
            ("print('same')\n", "same\n"),
            ("print(*range(3), sep='\\n')\n", "0\n9\n"),
        ),
        encoding="utf-8",
    )
    before = path.read_text(encoding="utf-8")
    runs = lesson_pool.submit(path, tmp_path / "run").result()
    first, _, third = python_blocks(before)
    assert record_outputs(path, runs) == [first.line, third.line]
    after = path.read_text(encoding="utf-8")
    assert "a 1.5 took ... s\n" in after and "same\n" in after and "0\n1\n2\n" in after
    assert after.count("\n") == before.count("\n") + 1  # the third block printed a line more
    assert check_lesson(path, tmp_path / "again", lesson_pool) == []


def test_lessons_run_on_the_same_numeric_paths_on_every_x86_machine(tmp_path, lesson_pool):
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the pinned paths are x86-64's (ATen AVX2, MKL, oneDNN)")
    code = (
        "import os, torch\n"
        "print(torch.backends.cpu.get_cpu_capability(), os.environ['MKL_CBWR'], torch.get_num_threads())\n"
    )
    (tmp_path / "a.md").write_text(lesson((code, None)), encoding="utf-8")
    out = lesson_pool.submit(tmp_path / "a.md", tmp_path).result()[0].stdout
    assert out.split() == ["AVX2", "COMPATIBLE", "2"]
