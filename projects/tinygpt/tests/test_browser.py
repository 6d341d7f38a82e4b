"""The demo as a person meets it, in headless Chromium, serving the shipped quick model (what `tinygpt demo` serves
on a fresh clone): an empty prompt shows a message; an example prompt shows its tokens, streams a completion and
ends with the token count."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from dlshared.browser import expect_text, screenshot, served_demo_page
from tinygpt.artifacts import SHIPPED, load_model
from tinygpt.demo import EXAMPLE_PROMPTS, build_demo

ASSETS = Path(__file__).parents[1] / "assets"


@pytest.mark.browser
def test_an_example_prompt_is_tokenised_and_completed_in_the_page(tmp_path):
    demo = build_demo(load_model(SHIPPED, "cpu"))
    with served_demo_page(demo) as page:
        page.get_by_label("Prompt", exact=True).fill("")
        page.get_by_role("button", name="Generate").click()
        expect_text(page, "⚠️")  # an empty prompt: a message under the output

        page.locator("button.gallery-item", has_text="class Stack").click()
        expect(page.get_by_label("Prompt", exact=True)).to_have_value(EXAMPLE_PROMPTS[1])
        page.get_by_role("spinbutton", name="number input for Max new tokens").fill("120")
        page.get_by_role("button", name="Generate").click()
        expect_text(page, re.compile(r"^\d+ tokens in \d+\.\d\d s$"))  # the end of the stream
        assert len(page.get_by_label("Completion").input_value()) > 20  # a completion, not an echo
        expect_text(page, "\\n")  # the token view shows the prompt's newlines as tokens
        screenshot(page, ASSETS / "demo.png", tmp_path)
