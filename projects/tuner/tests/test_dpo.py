"""The hand-written DPO loss against trl's DPOTrainer, the trainer that trains on it (stages.py) against trl's own,
and sequence_logps against a token-by-token computation.

trl (1.x) computes the loss inside `DPOTrainer.compute_loss(model, inputs)`, from the models' forward passes, so the
reference here is a real trainer built offline: two tiny random Llamas (policy and frozen reference) and a
word-level tokenizer made in the test, no downloads.
"""

from __future__ import annotations

import math
import random

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from tuner.dpo import dpo_loss, sequence_logps

WORDS = ["<pad>", "<unk>", "<eos>", "the", "cat", "dog", "sat", "ran", "on", "a", "mat", "is", "red", "blue"]
BETA = 0.37  # not trl's default, so a beta that is dropped somewhere shows
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


def tiny_llama(seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(WORDS),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        pad_token_id=0,
        bos_token_id=None,
        eos_token_id=2,
    )
    return LlamaForCausalLM(config).eval()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")


def make_trainer(cls, output_dir, **losses):
    """A DPO trainer of class `cls` on two tiny random Llamas (policy and frozen reference), beta = BETA."""
    from datasets import Dataset
    from trl import DPOConfig

    rows = [
        {"prompt": "the cat", "chosen": " sat on the mat", "rejected": " ran"},
        {"prompt": "a dog is", "chosen": " red", "rejected": " blue on a mat"},
    ]
    args = DPOConfig(
        output_dir=str(output_dir),
        beta=BETA,
        report_to=[],
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        per_device_train_batch_size=2,
        logging_strategy="no",
        save_strategy="no",
        **losses,
    )
    return cls(
        model=tiny_llama(0),
        ref_model=tiny_llama(1),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tiny_tokenizer(),
    )


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    from trl import DPOTrainer

    trainer = make_trainer(DPOTrainer, tmp_path_factory.mktemp("dpo"), loss_type=["sigmoid"])
    trainer.model.eval(), trainer.ref_model.eval()
    return trainer


def random_pairs(n: int, seed: int) -> list[dict[str, list[int]]]:
    """Tokenized pairs of random lengths in the layout DPOTrainer's dataset has after tokenization."""
    rng = random.Random(seed)

    def ids(lo, hi):
        return [rng.randrange(3, len(WORDS)) for _ in range(rng.randint(lo, hi))]

    return [{"prompt_ids": ids(1, 5), "chosen_ids": ids(1, 6) + [2], "rejected_ids": ids(1, 6) + [2]} for _ in range(n)]


def trl_dpo(trainer, pairs) -> dict[str, float]:
    """trl's loss and logged metrics (batch means) for one batch of pairs."""
    trainer._metrics["eval"].clear()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, trainer.data_collator(pairs))
    return {"loss": loss.item(), **{k: v[-1] for k, v in trainer._metrics["eval"].items()}}


def ours(trainer, pairs):
    """Our loss from plain forward passes: labels are the answer tokens, prompt and padding are -100."""
    batch = trainer.data_collator(pairs)  # input_ids (2B, T): B chosen rows, then B rejected rows
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        policy = sequence_logps(trainer.model(**kwargs).logits, labels)  # (2B,)
        ref = sequence_logps(trainer.ref_model(**kwargs).logits, labels)  # (2B,)
    (pi_c, pi_r), (ref_c, ref_r) = policy.chunk(2), ref.chunk(2)
    return dpo_loss(pi_c, pi_r, ref_c, ref_r, beta=BETA), pi_c, pi_r


def test_loss_rewards_and_accuracy_equal_trl_on_a_random_batch(trainer):
    pairs = random_pairs(6, seed=0)
    out, pi_c, pi_r = ours(trainer, pairs)
    ref = trl_dpo(trainer, pairs)
    assert 0 < out.accuracy < 1  # a batch with both outcomes, so the accuracy is tested
    assert out.loss.item() == pytest.approx(ref["loss"], abs=1e-6)
    assert out.chosen_rewards.mean().item() == pytest.approx(ref["rewards/chosen"], abs=1e-6)
    assert out.rejected_rewards.mean().item() == pytest.approx(ref["rewards/rejected"], abs=1e-6)
    margins = (out.chosen_rewards - out.rejected_rewards).mean().item()
    assert margins == pytest.approx(ref["rewards/margins"], abs=1e-6)
    assert out.accuracy.item() == ref["rewards/accuracies"]
    # trl's per-sequence log-probs come from its own fused LM head: a check of sequence_logps too
    assert pi_c.mean().item() == pytest.approx(ref["logps/chosen"], abs=1e-5)
    assert pi_r.mean().item() == pytest.approx(ref["logps/rejected"], abs=1e-5)
    # one pair per batch: the logged means are that pair's rewards, so each reward matches, not just the mean.
    # A single sequence's reward is BETA x (two float32 log-prob sums, each from another kernel): 1e-6 held on an
    # AVX-512 CPU but not on an AVX2 one (1.06e-6); the bound is the log-prob agreement above (1e-5) times BETA, per term
    reward_tolerance = BETA * 2 * 1e-5  # 7.4e-6
    for i, pair in enumerate(pairs):
        single = trl_dpo(trainer, [pair])
        assert out.chosen_rewards[i].item() == pytest.approx(single["rewards/chosen"], abs=reward_tolerance)
        assert out.rejected_rewards[i].item() == pytest.approx(single["rewards/rejected"], abs=reward_tolerance)


@pytest.mark.parametrize(
    "losses",
    [{"loss_type": ["sigmoid"]}, {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.7]}],
    ids=["dpo", "dpo+sft"],
)
def test_the_trainer_that_trains_on_dpo_py_has_trls_loss_gradients_and_logs(tmp_path, losses):
    """The DPO stage trains with HandWrittenDPOTrainer: the loss it optimises is dpo.py's, and it must be the
    number trl's own trainer computes, with the same gradients, so training is unchanged by the swap."""
    from trl import DPOTrainer

    from tuner.stages import HandWrittenDPOTrainer

    pairs = random_pairs(6, seed=1)
    results = {}
    for cls in (DPOTrainer, HandWrittenDPOTrainer):
        trainer = make_trainer(cls, tmp_path / cls.__name__, **losses)
        trainer.model.train()  # as in training: the logged numbers are recorded, gradients flow
        loss = trainer.compute_loss(trainer.model, trainer.data_collator(pairs))
        loss.backward()
        grads = {name: p.grad for name, p in trainer.model.named_parameters() if p.requires_grad}
        logged = trainer._metrics["train"] if cls is DPOTrainer else trainer.logged
        results[cls] = loss.item(), grads, {name: values[-1] for name, values in logged.items()}
    (trl_loss, trl_grads, trl_logged), (loss, grads, logged) = results[DPOTrainer], results[HandWrittenDPOTrainer]
    assert loss == pytest.approx(trl_loss, abs=1e-6)
    assert grads.keys() == trl_grads.keys() and len(grads) > 0
    for name, grad in grads.items():
        torch.testing.assert_close(grad, trl_grads[name], atol=1e-6, rtol=0, msg=name)
    assert set(logged) == {f"rewards/{k}" for k in ("chosen", "rejected", "accuracies", "margins")} | {
        "logps/chosen",
        "logps/rejected",
    }
    for name, value in logged.items():
        assert value == pytest.approx(trl_logged[name], abs=1e-6), name


def test_the_trainer_refuses_losses_it_does_not_implement(tmp_path):
    from tuner.stages import HandWrittenDPOTrainer

    with pytest.raises(ValueError, match="sigmoid"):
        make_trainer(HandWrittenDPOTrainer, tmp_path, loss_type=["ipo"])


def test_dpo_loss_by_hand():
    zero = torch.zeros(3)
    out = dpo_loss(zero, zero, zero, zero, beta=0.1)  # policy == reference: no preference yet
    assert out.loss.item() == pytest.approx(math.log(2))
    assert out.chosen_rewards.tolist() == out.rejected_rewards.tolist() == [0.0, 0.0, 0.0]
    assert out.accuracy.item() == 0.0  # a tie is not a win

    pi_c, pi_r = (
        torch.tensor([-1.0, -5.0], requires_grad=True),
        torch.tensor([-2.0, -3.0], requires_grad=True),
    )
    ref_c, ref_r = torch.tensor([-1.5, -4.0]), torch.tensor([-1.5, -4.0])
    out = dpo_loss(pi_c, pi_r, ref_c, ref_r, beta=0.5)
    assert out.chosen_rewards.tolist() == [0.25, -0.5] and out.rejected_rewards.tolist() == [-0.25, 0.5]
    expected = -(math.log(1 / (1 + math.exp(-0.5))) + math.log(1 / (1 + math.exp(1.0)))) / 2
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)
    assert out.accuracy.item() == 0.5
    out.loss.backward()
    assert (pi_c.grad < 0).all() and (pi_r.grad > 0).all()  # descent raises chosen and lowers rejected log-probs
    assert not out.chosen_rewards.requires_grad


def test_dpo_loss_is_finite_for_huge_margins():
    big = torch.tensor([1e4, -1e4])
    out = dpo_loss(big, -big, torch.zeros(2), torch.zeros(2), beta=1.0)
    assert torch.isfinite(out.loss) and out.loss.item() == pytest.approx(1e4, rel=1e-6)  # mean of 0 and 2e4


def test_sequence_logps_sums_the_answer_tokens_only():
    torch.manual_seed(0)
    model = tiny_llama(2)
    ids = torch.randint(3, len(WORDS), (3, 9))  # (B, T)
    prompt_len, answer_end = [2, 4, 1], [9, 7, 5]  # rows 1 and 2 end in padding
    labels = torch.full_like(ids, -100)
    for b in range(3):
        labels[b, prompt_len[b] : answer_end[b]] = ids[b, prompt_len[b] : answer_end[b]]
    with torch.no_grad():
        logits = model(input_ids=ids).logits  # (B, T, V)
    expected = torch.zeros(3)
    for b in range(3):
        for t in range(prompt_len[b], answer_end[b]):  # token t is predicted by the logits at t - 1
            expected[b] += torch.log_softmax(logits[b, t - 1], dim=-1)[ids[b, t]]
    torch.testing.assert_close(sequence_logps(logits, labels), expected, atol=1e-5, rtol=1e-6)
    # another ignore_index marks the same positions
    other = labels.clone()
    other[labels == -100] = -7
    torch.testing.assert_close(sequence_logps(logits, other, ignore_index=-7), expected, atol=1e-5, rtol=1e-6)
    assert sequence_logps(logits, torch.full_like(ids, -100)).tolist() == [0.0, 0.0, 0.0]
