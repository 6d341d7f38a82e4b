"""Root pytest config: every test in the workspace runs offline via the shared plugin.

Under pytest-xdist (`uv run pytest -n 2`, what CI runs) each member of the workspace (shared, course, each project)
runs whole on one worker: a project's session fixtures (a trained run, an index) are built once, not once per
worker, and the two workers run different members at once. (xdist's own `--dist loadgroup` marks do not reach
its scheduler under pytest 9.2, so the grouping is a scheduler here, through xdist's hook.)
"""

import os

pytest_plugins = ("dlshared.testing",)

# Two workers share the cores: OpenMP threads that spin while they wait take them from the other worker (kill and
# resume tests ran 3-8x slower with the default policy). Set here, before the workers, torchrun ranks and lesson
# servers start torch, so every one of them inherits it; a policy set by the caller is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_addoption(parser):
    parser.addoption(
        "--update-screenshots",
        action="store_true",
        help="browser tests write their screenshots over the pictures the READMEs show (dlshared.browser.screenshot)",
    )


def pytest_configure(config):
    if config.getoption("--update-screenshots"):  # a flag, not `UPDATE_SCREENSHOTS=1 cmd`: PowerShell has no such form
        os.environ["UPDATE_SCREENSHOTS"] = "1"  # read by dlshared.browser.screenshot, here and in xdist's workers


def workspace_member(nodeid: str) -> str:
    """'projects/rag/tests/test_x.py::test_y' -> 'projects/rag'; 'course/tests/...' -> 'course'."""
    parts = nodeid.split("/")
    return "/".join(parts[:2]) if parts[0] == "projects" else parts[0]


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkspaceMember(LoadScopeScheduling):
        """LoadScope's scheduling (largest scope first, each scope on one worker), a member being a scope."""

        def _split_scope(self, nodeid: str) -> str:
            return workspace_member(nodeid)

    return ByWorkspaceMember(config, log)
