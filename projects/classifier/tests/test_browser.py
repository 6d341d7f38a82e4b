"""The demo as a person meets it: `classifier demo` started as a command on a fresh clone (nothing trained), the page
opened in headless Chromium, an example picked, the button pressed, the answer read off the page."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dlshared.browser import demo_page, expect_text, screenshot
from dlshared.testing import free_port

ASSETS = Path(__file__).parents[1] / "assets"
FIRST_ANSWER_WITHIN_S = 30  # the promise: a fresh clone's demo answers within 30 s of the command


def wait_until_served(url: str, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the demo exited with code {process.returncode}:\n{process.stdout.read()}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing served on {url} after {timeout_s} s")


@pytest.fixture
def served_demo(tmp_path):
    """`classifier demo` as a user types it, with an empty runs folder: the shipped weights, no training."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "classifier"), "demo", "--runs", str(tmp_path / "runs")]
    started = time.monotonic()
    process = subprocess.Popen(
        [*command, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_served(url, process, timeout_s=120)
        yield url, started
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert not (tmp_path / "runs").exists()  # nothing was trained or written


@pytest.mark.browser
@pytest.mark.timed  # alone on the machine, as a user starts it: `uv run pytest -m timed` (.ci/run, before the rest)
def test_a_fresh_clones_demo_answers_an_example_in_the_browser_within_30_s(served_demo, tmp_path):
    url, started = served_demo
    with demo_page(url) as page:
        page.get_by_role("tab", name="Upload").click()
        page.get_by_role("button", name="Classify file").click()  # nothing chosen yet: a message, not a trace
        expect_text(page, "No image: upload one or pick an example.")

        page.locator("button.gallery-item", has_text="7_215.png").click()  # an example: a test-split 7
        page.get_by_text("7_215.png").first.wait_for()  # in the upload box, so the button sends it
        page.get_by_role("button", name="Classify file").click()
        top = page.get_by_test_id("label-output-value")
        top.get_by_text("7", exact=True).wait_for()
        answered = time.monotonic() - started
        assert page.get_by_text("No image").count() == 0  # the earlier message is gone
        shot = screenshot(page, ASSETS / "demo.png", tmp_path)
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
    assert answered < FIRST_ANSWER_WITHIN_S, f"first answer {answered:.1f} s after `classifier demo` started"
