"""Answers with citations: extractive by default (offline), generative with any HF causal LM.

Extractive: the sentences of the top passages closest to the question (cosine similarity of their embeddings),
in document order, each followed by the number of the passage it came from. It can only quote, never invent.
Generative: the numbered passages go into the prompt and the model is asked to cite them as [n]; the answer
streams token by token (the demo shows it as it is written).
"""

from __future__ import annotations

import queue
import re
import time
from collections.abc import Iterator
from threading import Event, Thread

import numpy as np

from dlshared.cli import UserError

from .embed import Embedder
from .retrieve import Hit

MAX_QUESTION_CHARS = 1000
"""Longer questions are refused everywhere (ask, eval files, the demo): they would only slow every model down."""
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`*\[(])|\n{2,}")


def check_question(question: str) -> str:
    """The question, stripped; a UserError when it is empty or over MAX_QUESTION_CHARS."""
    question = question.strip()
    if not question:
        raise UserError("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise UserError(f"the question is {len(question)} characters long; at most {MAX_QUESTION_CHARS}, please")
    return question


def sentences(text: str) -> list[str]:
    """Sentences and list items of a passage, Markdown noise (tables, fences, bare headings) dropped."""
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    out = []
    for line in re.split(SENTENCE_END, text):
        line = " ".join(s.strip(" -*>#|") for s in line.splitlines() if not set(s.strip()) <= set("|-: "))
        if len(line.split()) >= 4:
            out.append(line.strip())
    return out


def extractive_answer(question: str, hits: list[Hit], embedder: Embedder, max_sentences: int = 2) -> str:
    """The `max_sentences` sentences of the top 3 passages closest to the question, in reading order, each cited."""
    candidates = [(n, s) for n, hit in enumerate(hits[:3], start=1) for s in sentences(hit.chunk["text"])]
    if not candidates:
        return f"See [1]: {hits[0].citation()}." if hits else "No passage answers this question."
    vectors = embedder.encode([question] + [s for _, s in candidates])  # (1 + C, dim), unit length
    similarity = vectors[1:] @ vectors[0]  # (C,): cosine of each sentence to the question
    best = sorted(np.argsort(-similarity)[:max_sentences])  # keep reading order
    return " ".join(f"{candidates[i][1]} [{candidates[i][0]}]" for i in best)


def build_prompt(question: str, hits: list[Hit]) -> str:
    passages = "\n\n".join(f"[{n}] ({h.citation()})\n{h.chunk['text'].strip()}" for n, h in enumerate(hits, 1))
    return (
        "Answer the question using only the numbered passages. Cite the passages you use as [n]. "
        "If they do not contain the answer, say so.\n\n"
        f"{passages}\n\nQuestion: {question}\nAnswer:"
    )


class Generator:
    """A causal LM that writes the answer from the passages; `stream` yields the text as it grows.

    generate() runs in a thread and hands tokens over through a streamer. Neither side may wait forever: the
    reader gives up after `timeout` seconds without a token, an exception in the thread reaches the reader as a
    UserError (instead of leaving it waiting for a token that never comes), and a reader that stops (a timeout, a
    closed page) tells the thread to stop at its next token.
    """

    def __init__(self, name_or_path: str, device: str = "cpu", timeout: float = 120.0):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name_or_path)
            self.model = AutoModelForCausalLM.from_pretrained(name_or_path).to(device).eval()
        except Exception as err:  # not found, offline, not a causal LM: say so in one line
            message = f"could not load generator {name_or_path!r} ({err}); offline, leave --generator unset"
            raise UserError(" ".join(message.split())) from None
        self.device, self.timeout = device, timeout

    def _inputs(self, prompt: str):
        if getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
        else:
            ids = self.tokenizer(prompt, return_tensors="pt")
        return {k: v.to(self.device) for k, v in ids.items()}

    def stream(self, question: str, hits: list[Hit], max_new_tokens: int = 200) -> Iterator[str]:
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        streamer = TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=self.timeout
        )
        stop, failures = Event(), []
        kwargs = {
            **self._inputs(build_prompt(question, hits)),
            "max_new_tokens": max_new_tokens,
            "do_sample": False,
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([_StopWhenSet(stop)]),
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
        }

        def generate() -> None:
            try:
                self.model.generate(**kwargs)
            except Exception as err:  # handed to the reader below, which would otherwise wait for tokens forever
                failures.append(err)
                streamer.end()

        thread = Thread(target=generate, daemon=True)
        thread.start()
        text = ""
        try:
            for piece in streamer:
                text += piece
                yield text
        except queue.Empty:
            raise UserError(f"the generator wrote nothing for {self.timeout:g} s; stopped it") from None
        finally:
            stop.set()  # also when the reader stopped early: the thread ends at its next token
        thread.join(self.timeout)
        if failures:
            raise UserError(" ".join(f"the generator failed: {failures[0]}".split())[:500])


class _StopWhenSet:
    """A stopping criterion for generate(): stop every sequence once `event` is set."""

    def __init__(self, event: Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def answer_question(retriever, question: str, k: int, mode: str, generator=None, max_new_tokens: int = 200) -> dict:
    """Retrieve, then answer (extractive, or written by `generator`): what `rag ask` prints and returns."""
    question = check_question(question)
    hits, retrieval_ms = retriever.timed_search(question, k, mode)
    started = time.perf_counter()
    if generator is not None:
        answer = ""
        for partial in generator.stream(question, hits, max_new_tokens):
            answer = partial  # the stream yields the growing text; keep the last, complete one
    else:
        answer = extractive_answer(question, hits, retriever.embedder)
    latency = {"retrieval": round(retrieval_ms, 2), "answer": round((time.perf_counter() - started) * 1000, 2)}
    sources = [source(n, hit) for n, hit in enumerate(hits, start=1)]
    return {"question": question, "answer": answer, "sources": sources, "latency_ms": latency}


def source(n: int, hit: Hit) -> dict:
    """Passage [n] of an answer: where it is (file, lines, heading), its score and its rank in each list."""
    chunk = hit.chunk
    where = {"file": chunk["file"], "lines": [chunk["line_start"], chunk["line_end"]], "heading": chunk["heading"]}
    return {"n": n, **where, "score": round(hit.score, 5), "ranks": hit.sources}
