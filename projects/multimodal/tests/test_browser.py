"""The demo as a person meets it: headless Chromium on the demo of the tests' tiny CLIP. An empty query shows a
message in the page; an example query fills the gallery with eight scored images; zero-shot on an example image
shows a probability per label."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from dlshared.browser import expect_text, screenshot, served_demo_page
from multimodal.artifacts import load_run
from multimodal.cli import demo_index
from multimodal.demo import SEARCH_EXAMPLES, ZERO_SHOT_LABELS, build_demo

ASSETS = Path(__file__).parents[1] / "assets"


@pytest.mark.browser
def test_search_and_zero_shot_in_the_page(tiny_run, tmp_path):
    run_dir = Path(tiny_run["run_dir"])
    demo = build_demo(load_run(run_dir, "cpu"), demo_index(run_dir, None, "cpu"))
    with served_demo_page(demo) as page:
        page.get_by_label("Describe a picture").fill("   ")
        page.get_by_role("button", name="Search").click()
        expect_text(page, "Type what to look for")
        page.locator(".toast-close").first.click()

        page.locator("button.gallery-item", has_text=SEARCH_EXAMPLES[1]).click()
        expect(page.get_by_label("Describe a picture")).to_have_value(SEARCH_EXAMPLES[1])  # before the button sends it
        page.get_by_role("button", name="Search").click()
        scores = page.get_by_text(re.compile(r"^-?[01]\.\d{3}$"))  # each thumbnail's caption: its cosine
        scores.nth(7).wait_for(state="attached")  # the gallery scrolls: its last row may be out of sight
        shown = [float(score) for score in scores.all_inner_texts()]
        assert len(shown) == 8 and shown == sorted(shown, reverse=True)  # eight images, best first
        screenshot(page, ASSETS / "demo.png", tmp_path)

        page.get_by_role("tab", name="Zero-shot").click()
        page.get_by_text(ZERO_SHOT_LABELS).first.click()  # an example row: an indexed image and these labels
        expect(page.get_by_label("Labels, comma-separated")).to_have_value(ZERO_SHOT_LABELS)
        page.get_by_role("button", name="Classify").click()
        for label in ZERO_SHOT_LABELS.split(", "):  # a bar per label, as the page draws them
            page.get_by_test_id(f"{label}-confidence-set").wait_for()
