"""`--update-figures`: copy the pictures the lessons draw over the committed ones in course/figures/.
`--update-outputs`: rewrite the text blocks of the lessons whose blocks print something else (numbers move,
`...` marks stay); read `git diff` after, and fix the prose that quotes the numbers.
`--lesson-workers N`: how many lesson files run at once (default 2).
`lesson_pool`: the session's lesson servers, shared by the checker's tests and the lessons (each costs seconds to
start: it imports torch, transformers and the capstones)."""

import pytest

from coursekit.runner import LessonPool


def pytest_addoption(parser):
    parser.addoption(
        "--update-figures",
        action="store_true",
        help="copy the figures the lessons draw this run into course/figures/ (after changing a lesson's plots)",
    )
    parser.addoption(
        "--update-outputs",
        action="store_true",
        help="re-record the output shown under each lesson block that prints something else this run",
    )
    parser.addoption(
        "--lesson-workers",
        type=int,
        default=2,
        help="lesson files run at once, each in a process of its own (lessons pin their threads; 2 suits 2 cores)",
    )


@pytest.fixture(scope="session")
def lesson_pool(request):
    pool = LessonPool(request.config.getoption("--lesson-workers"))
    yield pool
    pool.close()
