"""The Gradio demo: one question, three answers side by side: the base, the SFT model and the DPO model.

One copy of the base is loaded; the SFT and DPO adapters sit on it as two named peft adapters, and the base
answer is computed with adapters disabled, so the three columns cost one model's memory. `build_demo` only
builds the app; `tuner demo` launches it on 127.0.0.1. A bad request becomes a message, never a stack trace.
"""

from __future__ import annotations

import html
import re
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from .artifacts import base_path, has_stage, run_config, template_of
from .evaluate import generate_answers
from .task import PROMPT_TEMPLATE, grade

MAX_QUESTION_CHARS = 300
COLUMNS = {"base": "Base (pretrained)", "sft": "SFT (LoRA)", "dpo": "DPO (LoRA)"}


@dataclass
class Models:
    model: object  # a PeftModel with adapters "sft" and/or "dpo", or the bare base
    tokenizer: object
    stages: list[str]
    template: str
    name: str


def load_models(run_dir: Path) -> Models:
    from .base import load_base
    from .lora import attach_adapter

    cfg = run_config(run_dir)
    model, tokenizer = load_base(base_path(run_dir, cfg))
    stages = ["base"]
    for stage in ("sft", "dpo"):
        if has_stage(run_dir, cfg, stage):
            model = attach_adapter(model, run_dir / stage, name=stage)
            stages.append(stage)
    return Models(model.eval(), tokenizer, stages, template_of(run_dir), Path(run_dir).name)


def answer_all(models: Models, question: str, max_new_tokens: int) -> tuple[str, str, str, str]:
    """(base, sft, dpo answers, status) for one question."""
    question = (question or "").strip()
    if not question:
        return "", "", "", "⚠️ The question is empty: type one, e.g. What is 23 plus 45?"
    if len(question) > MAX_QUESTION_CHARS:
        message = f"⚠️ The question has {len(question)} characters; shorten it to {MAX_QUESTION_CHARS} or fewer."
        return "", "", "", message
    prompt = models.template.format(prompt=question)
    answers = {}
    for stage in models.stages:
        if stage == "base":
            context = models.model.disable_adapter() if hasattr(models.model, "disable_adapter") else nullcontext()
        else:
            models.model.set_adapter(stage)
            context = nullcontext()
        with context:
            answers[stage] = generate_answers(models.model, models.tokenizer, [prompt], max_new_tokens)[0].strip()
    status = ""
    numbers = [int(n) for n in re.findall(r"\d+", question)]
    if models.template == PROMPT_TEMPLATE and len(numbers) == 2:  # the synthetic task: grade the answers too
        expected = sum(numbers)
        marks = []
        for stage, text in answers.items():
            correct, formatted = grade(text, expected)
            marks.append(f"{stage}: {'✅' if correct else '❌'} sum, {'✅' if formatted else '❌'} format")
        status = f'Expected **{expected}** in the form "The answer is {expected}." — ' + "; ".join(marks)
    missing = "(this run has no such model)"
    return answers.get("base", missing), answers.get("sft", missing), answers.get("dpo", missing), status


EXAMPLE_QUESTIONS = ["What is 23 plus 45?", "What is 7 plus 8?", "What is 61 plus 39?"]


def build_demo(models: Models, max_new_tokens: int = 32) -> gr.Blocks:
    def run(question: str) -> tuple[str, str, str, str]:
        return answer_all(models, question, max_new_tokens)

    with gr.Blocks(title="tuner") as demo:
        gr.Markdown(
            f"# tuner: base vs SFT vs DPO\nRun **{html.escape(models.name)}**. The same greedy decoding for all three; "
            "SFT teaches the answers, DPO the required format (course days 28-30)."
        )
        question = gr.Textbox(label="Question", value="What is 23 plus 45?", lines=1, max_length=MAX_QUESTION_CHARS)
        button = gr.Button("Answer", variant="primary")
        with gr.Row():
            outputs = [gr.Textbox(label=label, lines=3) for label in COLUMNS.values()]
        status = gr.Markdown()
        button.click(run, [question], [*outputs, status], api_name="answer")
        question.submit(run, [question], [*outputs, status])
        gr.Examples(EXAMPLE_QUESTIONS, question, label="Questions")
    return demo
