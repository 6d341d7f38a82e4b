"""The demo as a person meets it, in headless Chromium (the tests' tiny base/SFT/DPO run, then the shipped quick
run): an empty question shows a message in the page; an example question gets three answers and the verdict line."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from dlshared.browser import expect_text, screenshot, served_demo_page

ASSETS = Path(__file__).parents[1] / "assets"

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


@pytest.mark.browser
def test_an_example_question_gets_three_answers_in_the_page(tiny_run):
    from tuner.demo import COLUMNS, EXAMPLE_QUESTIONS, build_demo, load_models

    demo = build_demo(load_models(Path(tiny_run["run_dir"])), max_new_tokens=8)
    with served_demo_page(demo) as page:
        page.get_by_label("Question").fill("")
        page.get_by_role("button", name="Answer").click()
        expect_text(page, "question is empty")

        page.locator("button.gallery-item", has_text=EXAMPLE_QUESTIONS[1]).click()
        expect(page.get_by_label("Question")).to_have_value(EXAMPLE_QUESTIONS[1])  # before the button sends it
        page.get_by_role("button", name="Answer").click()
        expect_text(page, 'Expected 15 in the form "The answer is 15."')  # the verdict under the answers
        verdict = page.get_by_text("Expected 15").first.inner_text()
        assert verdict.count("format") == 3  # one mark per model
        for label in COLUMNS.values():  # each model's answer box, filled by the same greedy decoding
            page.get_by_label(label).wait_for()


@pytest.mark.browser
def test_the_shipped_run_answers_an_example_in_the_page(tmp_path):
    from tuner.artifacts import SHIPPED
    from tuner.demo import EXAMPLE_QUESTIONS, build_demo, load_models

    demo = build_demo(load_models(SHIPPED))  # what `tuner demo` serves on a fresh clone
    with served_demo_page(demo) as page:
        page.get_by_label("Question").fill(EXAMPLE_QUESTIONS[1])  # typed: the example click is the test above's
        page.get_by_role("button", name="Answer").click()
        expect_text(page, 'Expected 15 in the form "The answer is 15."')
        screenshot(page, ASSETS / "demo.png", tmp_path)
