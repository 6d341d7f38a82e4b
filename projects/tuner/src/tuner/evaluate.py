"""The metrics, defined once and used by train, eval, the README and the tests.

base/arith          the pretrained base's competence: greedy completions of "a+b=" on held-out pairs
task metric         greedy answers to held-out prompts, graded by task.grade: the fraction that are correct
                    AND formatted, with both parts reported ("correct", "formatted")
preference accuracy on held-out pairs, computed with dpo.py from each model's summed answer log-probs:
    pref_acc        vs the DPO reference (the SFT model): does the implicit reward beta*(log pi - log ref)
                    rank chosen above rejected? This is what DPO optimises; for the reference itself every
                    pair ties, which dpo.py counts as a loss, so it is only reported for the DPO model.
    logp_pref_acc   reference-free: log pi(chosen) > log pi(rejected). Defined for every model, so it is the
                    before/after number: the SFT model's own ranking, then the DPO model's.
"""

from __future__ import annotations

import torch

from .dpo import dpo_loss, sequence_logps
from .task import grade


@torch.no_grad()
def generate_answers(model, tokenizer, prompts: list[str], max_new_tokens: int = 24, batch_size: int = 64) -> list[str]:
    """Greedy completions (text after the prompt, up to eos) for each prompt, in batches."""
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # generation appends on the right
    device = next(model.parameters()).device
    out = []
    try:
        for i in range(0, len(prompts), batch_size):
            batch = tokenizer(prompts[i : i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
            batch = {k: v.to(device) for k, v in batch.items()}
            ids = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
            new = ids[:, batch["input_ids"].shape[1] :]
            out += tokenizer.batch_decode(new, skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    # a tokenizer whose eos is a newline (tinygpt exports) keeps it when decoding: cut at the first one
    return [text.split("\n")[0] if tokenizer.eos_token == "\n" else text for text in out]


def task_metrics(model, tokenizer, items: list[tuple[str, int]], max_new_tokens: int = 24) -> dict:
    """{"task", "correct", "formatted"} fractions over (prompt, expected sum) items, plus 3 sample answers."""
    answers = generate_answers(model, tokenizer, [p for p, _ in items], max_new_tokens)
    grades = [grade(a, expected) for a, (_, expected) in zip(answers, items, strict=True)]
    n = max(1, len(grades))
    return {
        "task": sum(c and f for c, f in grades) / n,
        "correct": sum(c for c, _ in grades) / n,
        "formatted": sum(f for _, f in grades) / n,
        "samples": [items[i][0].replace("\n", " ") + answers[i] for i in range(min(3, len(items)))],
    }


def arithmetic_accuracy(model, tokenizer, items: list[tuple[str, int]]) -> float:
    """Competence of the pretrained base in its own language: does it complete "a+b=" with a + b?"""
    import re

    prompts, expected = [], []
    for prompt, total in items:
        a, b = map(int, re.findall(r"\d+", prompt)[:2])
        prompts.append(f"{tokenizer.eos_token}{a}+{b}=")  # eos: the document boundary seen in pretraining
        expected.append(str(total))
    answers = generate_answers(model, tokenizer, prompts, max_new_tokens=4)
    return sum(a.strip() == e for a, e in zip(answers, expected, strict=True)) / max(1, len(items))


def tokenize_answer(tokenizer, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """(input ids, labels) of prompt + answer + eos, labels -100 on the prompt: the layout trl trains on."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full = tokenizer(prompt + answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    return full, [-100] * len(prompt_ids) + full[len(prompt_ids) :]


@torch.no_grad()
def answer_logps(model, tokenizer, prompts: list[str], answers: list[str], batch_size: int = 64) -> torch.Tensor:
    """(N,) log pi(answer | prompt), summed over the answer tokens and eos (dpo.sequence_logps)."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(prompts), batch_size):
        batch = zip(prompts[i : i + batch_size], answers[i : i + batch_size], strict=True)
        rows = [tokenize_answer(tokenizer, prompt, answer) for prompt, answer in batch]
        width = max(len(ids) for ids, _ in rows)
        pad = tokenizer.pad_token_id
        ids = torch.tensor([x + [pad] * (width - len(x)) for x, _ in rows], device=device)  # right padding
        labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in rows], device=device)
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in rows], device=device)
        logits = model(input_ids=ids, attention_mask=mask).logits  # (B, T, V)
        out.append(sequence_logps(logits, labels).cpu())
    return torch.cat(out)


Logps = tuple[torch.Tensor, torch.Tensor]
"""(chosen, rejected) summed answer log-probs of one model, each (N,)."""


def pair_logps(model, tokenizer, pairs: list[dict]) -> Logps:
    """(chosen, rejected) summed log-probs, each (N,), of one model on preference pairs."""
    prompts = [p["prompt"] for p in pairs]
    chosen = answer_logps(model, tokenizer, prompts, [p["chosen"] for p in pairs])
    rejected = answer_logps(model, tokenizer, prompts, [p["rejected"] for p in pairs])
    return chosen, rejected


def preference_metrics(policy: Logps, ref: Logps | None, beta: float) -> dict:
    """Preference accuracy with dpo.py: against `ref` (pref_acc, loss, margin) and reference-free
    (logp_pref_acc)."""
    zeros = torch.zeros_like(policy[0])
    out = {"logp_pref_acc": dpo_loss(*policy, zeros, zeros, beta=beta).accuracy.item()}
    if ref is not None:
        result = dpo_loss(*policy, *ref, beta=beta)
        out.update(
            pref_acc=result.accuracy.item(),
            dpo_loss=result.loss.item(),
            reward_margin=(result.chosen_rewards - result.rejected_rewards).mean().item(),
        )
    return out


def evaluate_run(run_dir, cfg, data, max_new_tokens: int = 24) -> dict:
    """Every model the run holds (base, SFT, DPO) on the held-out prompts and pairs: a flat dict of metrics,
    "<stage>/<metric>"."""
    from .artifacts import load_stage, present

    out, logps = {}, {}
    for stage in present(run_dir, cfg):
        if stage == "none":
            continue
        model, tokenizer = load_stage(run_dir, stage, cfg)
        if data.eval_items and stage == "base" and cfg.base is None:
            out["base/arith"] = round(arithmetic_accuracy(model, tokenizer, data.eval_items), 4)
        if data.eval_items:
            for key, value in task_metrics(model, tokenizer, data.eval_items, max_new_tokens).items():
                out[f"{stage}/{key}"] = value if key == "samples" else round(value, 4)
        if data.heldout_pairs:
            logps[stage] = pair_logps(model, tokenizer, data.heldout_pairs)
        del model
    for stage, policy in logps.items():
        # DPO's reference is the SFT model when there is one (else the base, adapter disabled)
        ref = logps.get("sft", logps.get("base")) if stage == "dpo" else None
        for key, value in preference_metrics(policy, ref, cfg.beta).items():
            out[f"{stage}/{key}"] = round(value, 4)
    out["heldout_prompts"], out["heldout_pairs"] = len(data.eval_items), len(data.heldout_pairs)
    return out
