"""The two fine-tuning stages, each one trl trainer on a LoRA model (course days 29-30).

sft  SFTTrainer on prompt/completion rows: next-token loss on the completion only (trl's default for this
     format), a fresh LoRA adapter on the frozen base. Saves the adapter (adapter_config.json +
     adapter_model.safetensors, a few hundred KB).
dpo  DPOTrainer on preference pairs, starting from the SFT adapter, minimising the loss of dpo.py
     (`HandWrittenDPOTrainer` below). With a PeftModel and no ref_model, trl copies the adapter into a frozen
     "ref" adapter, so the reference is exactly the SFT model and no second model is loaded. The "ref" copy is
     deleted before saving (the notes: otherwise it is saved too).
Both run through Accelerate inside the Trainer: the same code on CPU, one GPU or `accelerate launch`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import torch
from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

from .config import TrainConfig
from .dpo import DPOOutput, dpo_loss
from .lora import check_targets, load_policy, lora_config, trainable_report
from .pictures import DPO_NAMES, SFT_NAMES, trainer_history

MAX_LENGTH = 512
"""Longest prompt + answer in tokens; longer examples are cut (trl's keep_start)."""


def trainer_args(config_cls, cfg: TrainConfig, logs: Path, steps: int, batch: int, lr: float, **extra):
    """Arguments both trainers share. Defaults of trl that do not suit small CPU runs are set explicitly."""
    return config_cls(
        output_dir=str(logs),
        max_steps=steps,
        per_device_train_batch_size=batch,
        learning_rate=lr,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, steps // 10),
        weight_decay=0.0,
        logging_steps=max(1, steps // 20),
        save_strategy="no",
        report_to=["tensorboard"],
        use_cpu=not torch.cuda.is_available(),  # trl refuses a CPU run unless told
        bf16=cfg.bf16 or cfg.quantize != "none",  # trl's default is bf16=True; a CPU run in fp32 is exact
        activation_checkpointing=False,  # trl turns it on by default: memory the small models do not need
        seed=cfg.seed,
        data_seed=cfg.seed,
        disable_tqdm=not cfg.progress,
        max_length=MAX_LENGTH,
        dataloader_num_workers=0,
        **extra,
    )


def _last(history: list[dict], key: str) -> float | None:
    values = [h[key] for h in history if key in h]
    return round(values[-1], 4) if values else None


def sft(cfg: TrainConfig, base: str | Path, rows: list[dict], out_dir: Path, logs: Path) -> dict:
    """LoRA SFT of `base` on prompt/completion `rows`; the adapter goes to `out_dir`."""
    from datasets import Dataset

    model, tokenizer = load_policy(base, None, cfg, trainable=True)
    check_targets(model, cfg)
    args = trainer_args(SFTConfig, cfg, logs, cfg.sft_steps, cfg.sft_batch, cfg.sft_lr)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora_config(cfg),
    )
    report = trainable_report(trainer.model)
    print(
        f"sft: LoRA r={cfg.lora_r} on {list(cfg.target_modules)}: {report['trainable_params']:,} trainable "
        f"parameters, {report['trainable_percent']}% of the base's {report['base_params']:,}"
    )
    started = time.perf_counter()
    trainer.train()
    trainer.model.save_pretrained(out_dir)
    history = trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    return {
        **{f"lora_{k}": v for k, v in report.items()},
        "sft_loss_first": round(losses[0], 4) if losses else None,
        "sft_loss_last": round(losses[-1], 4) if losses else None,
        "sft_token_accuracy": _last(history, "mean_token_accuracy"),
        "sft_seconds": round(time.perf_counter() - started, 1),
        "sft_samples_per_s": _last(history, "train_samples_per_second"),
        "sft_history": trainer_history(history, SFT_NAMES),  # for curves.png
    }


class HandWrittenDPOTrainer(DPOTrainer):
    """trl's DPOTrainer (batches of pairs, the frozen reference, the loop on Accelerate) minimising dpo.py's loss.

    trl computes its loss in `compute_loss`; this class replaces that one method, so the loss the optimiser
    follows is `dpo.dpo_loss`, plus RPO's SFT term when the config asks for it (loss_type ["sigmoid", "sft"]).
    tests/test_dpo.py checks that loss, gradients and logged rewards equal trl's own on a batch.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        args, types = self.args, self.args.loss_type
        self.weight_of = dict(zip(types, args.loss_weights or [1.0] * len(types), strict=True))
        plain = args.f_divergence_type == "reverse_kl" and args.ld_alpha is None and not args.use_weighting
        if not plain or "sigmoid" not in types or not set(types) <= {"sigmoid", "sft"} or self.aux_loss_enabled:
            raise ValueError(f"{type(self).__name__} trains dpo.py's sigmoid loss (+ an SFT term), not {types}")
        self.logged = defaultdict(list)  # what `record` saw since the last log line

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # the batch: B chosen rows, then the same B prompts with their rejected answers, right-padded
        ids, mask = inputs["input_ids"], inputs["attention_mask"]  # (2B, T)
        labels = ids.masked_fill(inputs["completion_mask"] == 0, -100)  # (2B, T): the answer tokens only
        # trl's fused LM head gives log p(next token) at each answer position, 0 elsewhere, without building the
        # (2B, T, V) logits (dpo.sequence_logps computes the same from logits: tests/test_dpo.py compares them)
        outputs = model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False, fused_lm_head=True)
        token_logps = outputs.log_probs  # (2B, T-1)
        policy_chosen, policy_rejected = token_logps.sum(dim=1).chunk(2)  # (B,) each: log pi(y|x)
        if self.precompute_ref_logps:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:  # the SFT adapter's frozen copy (or a reference model), without gradient
            ref_chosen, ref_rejected = self.compute_ref_log_probs(self.ref_model or self.model, inputs)
        out = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=self.beta)
        loss = self.weight_of["sigmoid"] * out.loss
        if "sft" in self.weight_of:  # RPO: the chosen answers' mean token NLL keeps them likely
            chosen_logps = token_logps.chunk(2)[0]  # (B, T-1)
            chosen_tokens = inputs["completion_mask"][:, 1:].chunk(2)[0].bool()  # (B, T-1)
            loss = loss + self.weight_of["sft"] * -chosen_logps[chosen_tokens].mean()
        if self.model.training:
            self.record(out, policy_chosen, policy_rejected)
        return (loss, outputs) if return_outputs else loss

    def record(self, out: DPOOutput, policy_chosen: torch.Tensor, policy_rejected: torch.Tensor) -> None:
        """The numbers trl logs for DPO, over the batches of every process."""
        chosen, rejected = self.accelerator.gather(out.chosen_rewards), self.accelerator.gather(out.rejected_rewards)
        values = {
            "rewards/chosen": chosen.mean(),
            "rewards/rejected": rejected.mean(),
            "rewards/accuracies": (chosen > rejected).float().mean(),
            "rewards/margins": (chosen - rejected).mean(),
            "logps/chosen": self.accelerator.gather(policy_chosen.detach()).mean(),
            "logps/rejected": self.accelerator.gather(policy_rejected.detach()).mean(),
        }
        for name, value in values.items():
            self.logged[name].append(value.item())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training line: add the means of what `record` saw since the last one
            logs.update({name: sum(values) / len(values) for name, values in self.logged.items()})
            self.logged.clear()
        super().log(logs, start_time)


def dpo(cfg: TrainConfig, base: str | Path, adapter: Path | None, pairs: list[dict], out_dir: Path, logs: Path) -> dict:
    """DPO on `pairs`, from the SFT adapter (or a fresh one on the base when `adapter` is None)."""
    from datasets import Dataset

    model, tokenizer = load_policy(base, adapter, cfg, trainable=True)
    if adapter is None:
        check_targets(model, cfg)
    # the sigmoid loss of dpo.py, plus (RPO) an NLL term on the chosen answers that keeps them likely
    losses = {"loss_type": ["sigmoid"]}
    if cfg.dpo_sft_weight > 0:
        losses = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, cfg.dpo_sft_weight]}
    args = trainer_args(DPOConfig, cfg, logs, cfg.dpo_steps, cfg.dpo_batch, cfg.dpo_lr, beta=cfg.beta, **losses)
    trainer = HandWrittenDPOTrainer(
        model=model,
        ref_model=None,
        args=args,
        train_dataset=Dataset.from_list(pairs),
        processing_class=tokenizer,
        peft_config=lora_config(cfg) if adapter is None else None,
    )
    report = trainable_report(trainer.model) if adapter is None else {}  # a fresh adapter: report its size
    started = time.perf_counter()
    trainer.train()
    policy = trainer.model
    if "ref" in policy.peft_config:  # the frozen copy trl made to serve as the reference
        policy.delete_adapter("ref")
    policy.save_pretrained(out_dir)
    history = trainer.state.log_history
    return {
        **{f"lora_{k}": v for k, v in report.items()},
        "dpo_loss_first": _last(history[:1], "loss"),
        "dpo_loss_last": _last(history, "loss"),
        "dpo_train_reward_acc": _last(history, "rewards/accuracies"),
        "dpo_train_margin": _last(history, "rewards/margins"),
        "dpo_seconds": round(time.perf_counter() - started, 1),
        "dpo_samples_per_s": _last(history, "train_samples_per_second"),
        "dpo_history": trainer_history(history, DPO_NAMES),  # for curves.png
    }
