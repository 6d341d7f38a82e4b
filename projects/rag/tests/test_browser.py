"""The demo as a person meets it, in headless Chromium, over the tests' small document set: a blank question shows
a message; a question is answered with its cited passage, which opens to show its text."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from playwright.sync_api import expect

from dlshared.browser import expect_text, screenshot, served_demo_page
from rag.demo import EXAMPLES, IndexInBackground, build_demo
from rag.retrieve import Retriever

ASSETS = Path(__file__).parents[1] / "assets"


@pytest.mark.browser
def test_a_question_is_answered_with_its_cited_passage_in_the_page(index_dir, embedder, tmp_path):
    demo = build_demo(Retriever(index_dir, embedder))
    with served_demo_page(demo) as page:
        question = page.get_by_label("Question")
        question.fill("   ")
        page.get_by_role("button", name="Ask").click()
        expect_text(page, "Type a question first")

        page.locator("button.gallery-item", has_text=EXAMPLES[0]).click()  # examples fill the box
        expect(question).to_have_value(EXAMPLES[0])
        question.fill("How do zebras differ from one another?")
        page.get_by_role("button", name="Ask").click()
        expect_text(page, "notes/zebra.md")  # the passage it cites
        page.locator("summary", has_text="notes/zebra.md").first.click()  # opened, as a reader would
        expect_text(page, "unique")
        screenshot(page, ASSETS / "demo.png", tmp_path)


@pytest.mark.browser
def test_the_page_follows_a_background_build(index_dir, embedder):
    """No index yet: the page is there at once, says it is indexing, and shows the index once built."""
    release = threading.Event()
    pending = IndexInBackground(lambda: release.wait(60) and Retriever(index_dir, embedder))
    with served_demo_page(build_demo(pending)) as page:
        expect_text(page, "Indexing the documents")
        page.get_by_label("Question").fill("How do zebras differ from one another?")
        page.get_by_role("button", name="Ask").click()
        expect_text(page, "ask again in a moment")
        release.set()
        expect_text(page, "chunks from 4 files")  # the statistics line, refreshed by the page's timer
        page.get_by_role("button", name="Ask").click()
        expect_text(page, "notes/zebra.md")
