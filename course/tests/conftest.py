"""`--update-figures`: copy the pictures the lessons draw over the committed ones in course/figures/."""


def pytest_addoption(parser):
    parser.addoption(
        "--update-figures",
        action="store_true",
        help="copy the figures the lessons draw this run into course/figures/ (after changing a lesson's plots)",
    )
