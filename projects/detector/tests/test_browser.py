"""The demo as a person meets it, in headless Chromium (the shipped quick detector, the tests' tiny U-Net): Detect
with no image shows a message in the page; an example seed draws a picture, Detect draws boxes and lists them,
Segment colours the classes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from detector.artifacts import SHIPPED, load_detector
from detector.demo import build_demo
from detector.segmentation import load_segmenter
from dlshared.browser import expect_text, screenshot, served_demo_page

ASSETS = Path(__file__).parents[1] / "assets"


@pytest.mark.browser
def test_detect_and_segment_an_example_in_the_page(tiny_unet, tmp_path):
    segmenter, card = load_segmenter(tiny_unet["run_dir"])
    demo = build_demo(load_detector(SHIPPED, "cpu"), segmenter, card)
    with served_demo_page(demo) as page:
        page.get_by_role("button", name="Detect").click()
        expect_text(page, "⚠️")  # no image yet: a message where the count of objects goes

        page.locator("button.gallery-item", has_text="7").first.click()  # example seed 7 draws its picture
        served = page.locator("img[src*='/file=']")  # pictures the demo served (not the page's own logos)
        served.first.wait_for()  # the example's picture is in the input box before Detect is pressed
        page.get_by_role("button", name="Detect").click()
        expect_text(page, re.compile(r"^\d+ objects above score 0\.30$"))
        served.nth(1).wait_for()  # the boxes drawn, in the Detection tab
        screenshot(page, ASSETS / "demo.png", tmp_path)

        page.get_by_role("tab", name="Segmentation").click()
        page.get_by_role("button", name="Segment").click()
        page.get_by_role("tabpanel").locator("img[src*='/file=']").first.wait_for()  # the classes coloured over it
