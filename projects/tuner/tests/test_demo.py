"""The demo, served on 127.0.0.1 and called through gradio_client: three answers; messages for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlshared.demo import launch
from dlshared.testing import free_port

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


@pytest.fixture(scope="module")
def client(tiny_run):
    from gradio_client import Client

    from tuner.demo import build_demo, load_models

    models = load_models(Path(tiny_run["run_dir"]))
    assert models.stages == ["base", "sft", "dpo"]
    demo = build_demo(models, max_new_tokens=8)
    url = launch(demo, port=free_port(), block=False)
    assert url.startswith("http://127.0.0.1:")
    yield Client(url, verbose=False)
    demo.close()


def test_one_question_gets_three_answers_and_a_verdict(client):
    base, sft, dpo, status = client.predict("What is 23 plus 45?", api_name="/answer")
    assert all(isinstance(a, str) for a in (base, sft, dpo))
    assert "Expected **68**" in status and status.count("format") == 3
    assert client.predict("What is 23 plus 45?", api_name="/answer") == (base, sft, dpo, status)  # greedy


@pytest.mark.parametrize(("question", "message"), [("", "question is empty"), ("  ", "question is empty"),
                                                   ("x" * 301, "shorten it")])  # fmt: skip
def test_bad_questions_get_a_message(client, question, message):
    *answers, status = client.predict(question, api_name="/answer")
    assert answers == ["", "", ""] and message in status


def test_the_adapters_change_the_answers_only_where_loaded(tiny_run):
    from tuner.demo import answer_all, load_models

    models = load_models(Path(tiny_run["run_dir"]))
    models.stages = ["base"]  # as for a run that stopped after pretraining
    base, sft, dpo, _ = answer_all(models, "What is 1 plus 2?", 4)
    assert sft == dpo == "(this run has no such model)"
