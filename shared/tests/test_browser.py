"""`served_demo_page`: a demo served, opened in headless Chromium, read back, and everything closed afterwards."""

from __future__ import annotations

import urllib.request

import pytest
from playwright.sync_api import expect

from dlshared.browser import expect_text, served_demo_page


def echo_demo():
    """Two components and a button: the smallest demo whose answer must come back from the server."""
    import gradio as gr

    with gr.Blocks() as blocks:
        text = gr.Textbox(label="Words")
        shouted = gr.Textbox(label="Shouted")
        gr.Button("Shout").click(lambda words: words.upper() + "!", text, shouted)
    return blocks


@pytest.mark.browser
def test_a_served_page_answers_and_its_server_is_closed_after_the_block():
    blocks = echo_demo()
    with served_demo_page(blocks) as page:
        url = page.url
        page.get_by_label("Words").fill("hello")
        page.get_by_role("button", name="Shout").click()
        expect(page.get_by_label("Shouted")).to_have_value("HELLO!", timeout=60_000)  # the server's answer, in the page
    assert url.startswith("http://127.0.0.1:")
    with pytest.raises(OSError):  # nothing listens there any more
        urllib.request.urlopen(url, timeout=2)


@pytest.mark.browser
def test_the_server_is_closed_when_the_test_inside_fails():
    blocks = echo_demo()
    with pytest.raises(AssertionError, match="never appeared"), served_demo_page(blocks, timeout_s=5) as page:
        url = page.url
        expect_text(page, "a text the demo does not show", timeout_s=0.5)
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)
