"""The demo, served on 127.0.0.1 and called through gradio_client: three answers; messages for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlshared.testing import served_demo

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


@pytest.fixture(scope="module")
def client(tiny_run):

    from tuner.demo import build_demo, load_models

    models = load_models(Path(tiny_run["run_dir"]))
    assert models.stages == ["base", "sft", "dpo"]
    demo = build_demo(models, max_new_tokens=8)
    with served_demo(demo) as client:
        yield client


def test_one_question_gets_three_answers_and_a_verdict(client):
    base, sft, dpo, status = client.predict("What is 23 plus 45?", api_name="/answer")
    assert all(isinstance(a, str) for a in (base, sft, dpo))
    assert "Expected **68**" in status and status.count("format") == 3
    assert client.predict("What is 23 plus 45?", api_name="/answer") == (base, sft, dpo, status)  # greedy


@pytest.mark.parametrize(
    ("question", "message"), [("", "question is empty"), ("  ", "question is empty"), ("x" * 301, "shorten it")]
)
def test_bad_questions_get_a_message(client, question, message):
    *answers, status = client.predict(question, api_name="/answer")
    assert answers == ["", "", ""] and message in status


def test_each_column_is_its_own_model_and_a_missing_stage_says_so(tiny_run):
    """The base column is the base (adapters off), the SFT and DPO columns their adapters; a run without an
    adapter shows a note in its column and leaves the others as they were."""
    import torch

    from tuner.artifacts import load_stage
    from tuner.demo import answer_all, load_models
    from tuner.evaluate import generate_answers

    run = Path(tiny_run["run_dir"])
    models = load_models(run)
    question = "What is 1 plus 2?"
    prompt = models.template.format(prompt=question)
    columns = dict(zip(("base", "sft", "dpo"), answer_all(models, question, 4)[:3], strict=True))
    for stage, answer in columns.items():  # each as its own model, loaded alone, answers it
        model, tokenizer = load_stage(run, stage)
        assert answer == generate_answers(model, tokenizer, [prompt], 4)[0].strip(), stage
    # and the comparison can tell the models apart: the adapters do change the next-token logits
    ids = models.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        with models.model.disable_adapter():
            base_logits = models.model(**ids).logits
        models.model.set_adapter("dpo")
        assert not torch.allclose(models.model(**ids).logits, base_logits)

    models.stages = ["base"]  # as for a run that stopped after pretraining
    base, sft, dpo, _ = answer_all(models, question, 4)
    assert base == columns["base"] and sft == dpo == "(this run has no such model)"
