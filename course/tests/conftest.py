"""`--update-figures`: copy the pictures the lessons draw over the committed ones in course/figures/.
`--lesson-workers N`: how many lesson files run at once (default 2)."""


def pytest_addoption(parser):
    parser.addoption(
        "--update-figures",
        action="store_true",
        help="copy the figures the lessons draw this run into course/figures/ (after changing a lesson's plots)",
    )
    parser.addoption(
        "--lesson-workers",
        type=int,
        default=2,
        help="lesson files run at once, each in a process of its own (lessons pin their threads; 2 suits 2 cores)",
    )
