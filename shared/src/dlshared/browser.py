"""Demos tested as pages: headless Chromium driven by playwright, as a person would use them.

The browser is the system's Chromium (Debian's `chromium` package; `.ci/run` installs it with apt-get), never one
that playwright downloads: `playwright install` needs the network, and a test suite that fetches browsers is not
offline. The page is kept offline too: every host name but 127.0.0.1 resolves to nothing, so a demo that pulls a
font or a script from a CDN shows it here first (Gradio falls back to system fonts).

    with served_demo_page(build_demo(model)) as page:   # or demo_page(url) for a demo served some other way
        page.get_by_role("button", name="Classify file").click()
        expect_text(page, "Top-5 classes")
        screenshot(page, ASSETS / "demo.png", tmp_path)

Tests that use it carry `@pytest.mark.browser` (deselect them with `-m "not browser"`); they are skipped with a
reason where no Chromium is installed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"
"""Chromium flag: no name resolves except 127.0.0.1 (the demo), so the page cannot reach the network."""

BROWSER_FAILURE_SHOTS = "BROWSER_FAILURE_SHOTS"
"""Environment variable: a PNG path; a test that fails inside `demo_page` leaves the page there (and its HTML)."""

UPDATE_SCREENSHOTS = "UPDATE_SCREENSHOTS"
"""Environment variable: when set to 1, `screenshot` writes over the README's committed picture (`pytest
--update-screenshots` sets it)."""


def chromium_path() -> str | None:
    """$CHROMIUM, else the first Chromium-family browser on PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    return next((path for path in map(shutil.which, names) if path), None)


def chromium_or_skip() -> str:
    """The browser to drive; the test is skipped, with the reason, where none is installed."""
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium installed (apt-get install chromium, or set $CHROMIUM)")
    return executable


@contextmanager
def demo_page(url: str, width: int = 1280, height: int = 900, timeout_s: float = 60) -> Iterator[Any]:
    """A playwright `Page` in headless Chromium, opened at `url` once the Gradio app has rendered."""
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=[OFFLINE])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(timeout_s * 1000)
            page.goto(url)
            page.locator("gradio-app .main, gradio-app main, .gradio-container").first.wait_for()
            try:
                yield page
            except BaseException:  # what the page showed when the test failed, for whoever reads the failure
                if os.environ.get(BROWSER_FAILURE_SHOTS):
                    shot = Path(os.environ[BROWSER_FAILURE_SHOTS])
                    page.screenshot(path=str(shot), full_page=True)
                    shot.with_suffix(".html").write_text(page.content(), encoding="utf-8")
                raise
        finally:
            browser.close()


@contextmanager
def served_demo_page(blocks: Any, width: int = 1280, height: int = 900, timeout_s: float = 60) -> Iterator[Any]:
    """`blocks` (a Gradio demo) served on a free loopback port and opened in headless Chromium by `demo_page`;
    on the way out the browser closes, then the server, whether the test passed or not."""
    from .demo import launch
    from .testing import free_port

    chromium_or_skip()  # before the server starts: a skipped test launches nothing
    url = launch(blocks, port=free_port(), block=False)
    try:
        with demo_page(url, width, height, timeout_s) as page:
            yield page
    finally:
        blocks.close()


def expect_text(page: Any, text: str, timeout_s: float = 60) -> None:
    """Wait until `text` is visible somewhere on the page (what a person would read), or fail saying so."""
    try:
        page.get_by_text(text).first.wait_for(state="visible", timeout=timeout_s * 1000)
    except Exception as error:  # playwright's TimeoutError: say what was missing, not where playwright waited
        body = page.locator("body").inner_text()[:2000]
        raise AssertionError(f"{text!r} never appeared on the page; it shows:\n{body}") from error


def screenshot(page: Any, committed: Path, tmp_path: Path) -> Path:
    """Save the page as a PNG: into `tmp_path` (every run, so the capture itself is tested), and over `committed`
    (the picture the README shows) when $UPDATE_SCREENSHOTS is 1. Returns the file written in `tmp_path`."""
    path = tmp_path / committed.name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get(UPDATE_SCREENSHOTS) == "1":
        committed.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, committed)
    return path
