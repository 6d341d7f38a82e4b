"""The demo as a person meets it, in headless Chromium (the tests' tiny diffusion run): a class out of range shows a
message in the page; a valid request draws the sample grid and the denoising strip."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffusion.demo import build_demo
from dlshared.browser import demo_page, expect_text
from dlshared.demo import launch
from dlshared.testing import free_port


@pytest.mark.browser
def test_generate_in_the_page_and_a_bad_class_gets_a_message(tiny_run, runs_root):
    demo = build_demo(Path(tiny_run["run_dir"]), runs=runs_root / "no-vae-here")
    url = launch(demo, port=free_port(), block=False)
    try:
        with demo_page(url) as page:
            page.get_by_label("Class (0-9)").fill("10")
            page.get_by_label("Steps (1-1000; DDPM wants ~1000)").fill("5")
            page.get_by_role("button", name="Generate").click()
            expect_text(page, "⚠️")  # the class is out of range: a message, not a trace

            page.get_by_label("Class (0-9)").fill("4")
            page.get_by_role("button", name="Generate").click()
            expect_text(page, "samples of class 4, sampler ddim, 5 steps")
            page.locator("img[src*='/file=']").nth(1).wait_for()  # the grid and the denoising strip (served files)
    finally:
        demo.close()
