"""The demo, served on 127.0.0.1 and called through gradio_client, as a browser would."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlshared.testing import served_demo
from tinygpt.artifacts import load_model
from tinygpt.demo import build_demo


@pytest.fixture(scope="module")
def client(tiny_run):

    demo = build_demo(load_model(Path(tiny_run["run_dir"]), "cpu"))
    with served_demo(demo) as client:
        yield client


def test_the_page_shows_the_run_name_as_text(tiny_run, tmp_path):
    """A folder name is data: HTML in it is escaped, not rendered."""
    import shutil

    from tinygpt.demo import model_summary

    run = Path(shutil.copytree(tiny_run["run_dir"], tmp_path / "<img src=x onerror=alert(1)>"))
    summary = model_summary(load_model(run, "cpu"))
    assert "<img" not in summary and "&lt;img src=x onerror=alert(1)&gt;" in summary


def test_a_prompt_gets_a_completion(client):
    text, status = client.predict("def ", 12, 0.8, 50, 1.0, 7, api_name="/complete")
    assert text and "tokens in" in status
    again, _ = client.predict("def ", 12, 0.8, 50, 1.0, 7, api_name="/complete")
    assert again == text  # the seed makes it reproducible


@pytest.mark.parametrize(
    "prompt, max_new, message",
    [("", 10, "prompt is empty"), ("y" * 100, 10, "shorten it"), ("z" * 200_000, 10, "limited to 100,000 characters")],
)
def test_bad_requests_get_a_message(client, prompt, max_new, message):
    text, status = client.predict(prompt, max_new, 0.8, 50, 1.0, 7, api_name="/complete")
    assert text == "" and message in status


def test_out_of_range_settings_are_refused_with_a_message(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="less than minimum"):  # the slider's own bounds check
        client.predict("def", 0, 0.8, 50, 1.0, 7, api_name="/complete")
