"""The demo as a person meets it: the Papers tab opened in headless Chromium, an example paper picked, the button
pressed, the prediction and its neighbours read off the page; a paper number out of range shows a message."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from dlshared.browser import expect_text, screenshot, served_demo_page
from graph.artifacts import load_node_run
from graph.demo import build_demo

ASSETS = Path(__file__).parents[1] / "assets"


@pytest.mark.browser
def test_a_paper_is_classified_in_the_page_and_a_bad_number_gets_a_message(node_run, tmp_path):
    run = load_node_run(Path(node_run["run_dir"]), "cpu")
    predicted = run.data.classes[int(run.model(run.data.graph.x, run.data.graph.edge_index)[1701].argmax())]
    demo = build_demo(run)
    with served_demo_page(demo) as page:
        number = page.get_by_label("paper number")
        number.fill("2708")  # one past the last paper
        page.get_by_role("button", name="Classify").click()
        expect_text(page, "numbered 0 to 2707")  # Gradio's error toast, in the page
        page.locator(".toast-close").first.click()  # dismissed, as a person would

        page.locator("button.gallery-item", has_text="1701").click()  # an example
        expect(number).to_have_value("1701")  # in the box before the button sends it (else the old value goes)
        page.get_by_role("button", name="Classify").click()
        expect_text(page, "Paper 1701")
        expect_text(page, f"Predicted: {predicted}")
        screenshot(page, ASSETS / "demo.png", tmp_path)
