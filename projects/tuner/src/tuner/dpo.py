"""Direct Preference Optimization, written out by hand (course day 30).

DPO (Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is Secretly a Reward Model",
https://arxiv.org/abs/2305.18290) fine-tunes a policy pi on pairs (prompt x, chosen y_w, rejected y_l) without a
reward model or RL. The policy's log-ratio to a frozen reference model acts as an implicit reward,

    r(x, y) = beta * (log pi(y|x) - log ref(y|x)),

and the Bradley-Terry likelihood that the chosen answer beats the rejected one gives the loss

    loss = -log sigmoid(r(x, y_w) - r(x, y_l))
         = -log sigmoid(beta * ((log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x)))),

averaged over the batch. log pi(y|x) is the sum of the answer tokens' log-probs (`sequence_logps`); beta sets how
far the policy may drift from the reference (small beta: far).

Where it runs: the DPO stage trains on `dpo_loss` (stages.HandWrittenDPOTrainer, trl's DPOTrainer with this loss),
and the evaluation ranks held-out pairs with `sequence_logps` and `dpo_loss` (evaluate.py). tests/test_dpo.py
checks both against trl's own DPOTrainer (loss_type="sigmoid").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Sum of log p(token) over the answer tokens of each sequence: log pi(y|x).

    logits: (B, T, V) from a causal LM run on prompt + answer. labels: (B, T), the input ids with every position
    that is not an answer token (prompt, padding) set to `ignore_index`. The logits at position t predict the token
    at t + 1, so logits and labels are shifted by one against each other. Returns (B,) in float32.
    """
    logits = logits[:, :-1, :].float()  # (B, T-1, V): the prediction for the next token
    labels = labels[:, 1:]  # (B, T-1): the token that came next
    mask = labels != ignore_index  # (B, T-1): answer tokens only
    logps = logits.log_softmax(dim=-1)  # (B, T-1, V)
    token_logps = logps.gather(-1, labels.masked_fill(~mask, 0).unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    return torch.where(mask, token_logps, 0.0).sum(dim=-1)  # (B,)


@dataclass
class DPOOutput:
    loss: torch.Tensor  # (): mean of -logsigmoid(chosen_rewards - rejected_rewards) over the batch
    chosen_rewards: torch.Tensor  # (B,): beta * (pi_c - ref_c), detached: for logging
    rejected_rewards: torch.Tensor  # (B,): beta * (pi_r - ref_r), detached
    accuracy: torch.Tensor  # (): fraction of pairs whose chosen reward beats the rejected one


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
) -> DPOOutput:
    """The DPO sigmoid loss from per-sequence summed log-probs, each (B,): see the module docstring.

    The reference log-probs carry no gradient (computed under torch.no_grad, or precomputed once).
    """
    chosen_logratios = policy_chosen_logps - ref_chosen_logps  # (B,): log pi(y_w|x) / ref(y_w|x)
    rejected_logratios = policy_rejected_logps - ref_rejected_logps  # (B,)
    logits = beta * (chosen_logratios - rejected_logratios)  # (B,): reward margin
    loss = -F.logsigmoid(logits).mean()  # (): logsigmoid is stable for large |logits|
    chosen_rewards = beta * chosen_logratios.detach()  # (B,)
    rejected_rewards = beta * rejected_logratios.detach()  # (B,)
    accuracy = (chosen_rewards > rejected_rewards).float().mean()  # ()
    return DPOOutput(loss, chosen_rewards, rejected_rewards, accuracy)
