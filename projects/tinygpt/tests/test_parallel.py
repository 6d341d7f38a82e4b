"""DDP and FSDP (course day 33) over 2 CPU processes (gloo): both follow one process that takes the same global batch,
an FSDP run writes the files a DDP run writes, resumes, and holds half the parameter and optimizer bytes per rank."""

from __future__ import annotations

import dataclasses
import json
from contextlib import nullcontext

import torch
from safetensors.torch import load_file

from dlshared.checkpoint import load_resume_state
from dlshared.processes import run_distributed
from dlshared.seed import seed_everything
from dlshared.testing import assert_one_line_error
from tinygpt.cli import main
from tinygpt.data import Batches, load_data
from tinygpt.evaluate import evaluate_loss
from tinygpt.model import build_model, model_config
from tinygpt.parallel import train_in_turn
from tinygpt.train import configure_optimizer, estimate_losses, lr_at

from .conftest import tiny_config

# fp32 sums in another order: autograd through one process's mean of two losses, gloo's all-reduce (DDP) and
# reduce-scatter (FSDP) of two ranks' gradients, one thread per rank against two. Rounding differences of ~1e-7 in
# a gradient can reach the weights undamped (AdamW divides by the gradient's own scale), so after 6 steps the
# weights may differ by a few float32 steps (measured: at most 1.2e-7 apart); 1e-6 leaves room, while a wrong
# average, a missed reduce or a lost optimizer state moves weights by ~lr (3e-3). Losses are rounded to 4 decimals
# in the metrics: they may differ by one in the last place.
WEIGHTS = dict(rtol=1e-5, atol=1e-6)
LOSS = 1.01e-4


def one_process(cfg, world: int = 2) -> tuple[torch.nn.Module, list[dict], float]:
    """What data parallelism must compute, written out: one model; each step's gradient is the mean over the
    batches that `world` ranks draw (rank r's own stream, seed + r, as train.py's), clipped, then one AdamW step."""
    cpu = torch.device("cpu")
    data = load_data(cfg)
    seed_everything(cfg.seed)
    model = build_model(model_config(cfg, data.tokenizer.vocab_size))
    optimizer = configure_optimizer(cfg, model, cpu)
    streams = [Batches(data.train, cfg.block_size, cfg.batch_size, cfg.seed + rank, cpu) for rank in range(world)]
    history = []
    for it in range(cfg.max_iters):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(cfg, it)
        loss = sum(model(*next(stream))[1] for stream in streams) / world  # the global batch's mean loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if (it + 1) % cfg.eval_interval == 0:
            history.append({"iter": it + 1, **estimate_losses(model, data, cfg, nullcontext)})
    return model, history, evaluate_loss(model, data.val, cfg.block_size, cfg.batch_size)


def assert_losses_close(history: list[dict], expected: list[dict]) -> None:
    assert [h["iter"] for h in history] == [h["iter"] for h in expected]
    for got, want in zip(history, expected, strict=True):
        for name in ("train_loss_estimate", "val_loss_estimate"):
            assert abs(got[name] - want[name]) <= LOSS, (got, want)


def test_ddp_and_fsdp_follow_one_process_and_fsdp_holds_half_the_bytes(tmp_path, capsys):
    # a peak for MFU given: each rank would otherwise time a 1024 x 1024 matmul for 0.3 s in every run
    cfg = tiny_config(tmp_path, device="cpu", max_iters=6, eval_interval=3, sample_tokens=8, peak_flops=1e12)
    runs = [
        dataclasses.replace(cfg, name="ddp"),
        dataclasses.replace(cfg, name="fsdp", parallel="fsdp", max_iters=3),  # stopped at a checkpoint...
        dataclasses.replace(cfg, name="fsdp", parallel="fsdp", resume=True),  # ...and resumed to the end
    ]
    (ddp, stopped, fsdp), (ddp1, stopped1, fsdp1) = run_distributed(train_in_turn, runs)
    model, history, val_loss = one_process(cfg)

    # the same training, three ways: DDP, FSDP (stopped and resumed) and one process on both ranks' batches
    assert ddp["processes"] == fsdp["processes"] == 2 and fsdp["val_loss"] == fsdp1["val_loss"]
    assert stopped["history"] == fsdp["history"][:1] and fsdp["sample"]  # every rank sampled through the shards
    for run in (ddp, fsdp):
        assert_losses_close(run["history"], history)
        assert abs(run["val_loss"] - round(val_loss, 4)) <= LOSS
    reference = {name: tensor.detach() for name, tensor in model.state_dict().items()}
    saved = {name: load_file(str(tmp_path / "tinygpt" / name / "model.safetensors")) for name in ("ddp", "fsdp")}
    for weights in saved.values():
        assert weights.keys() == reference.keys()  # whole tensors under one process's names, the tied head too
        for name, tensor in weights.items():
            torch.testing.assert_close(tensor, reference[name], **WEIGHTS, msg=name)

    # FSDP's resume file is DDP's: the whole optimizer state under torch's own parameter numbers
    ddp_state, fsdp_state = (load_resume_state(tmp_path / "tinygpt" / name / "resume.pt") for name in ("ddp", "fsdp"))
    assert fsdp_state["optimizer"]["param_groups"] == ddp_state["optimizer"]["param_groups"]
    for number, moments in ddp_state["optimizer"]["state"].items():
        for name, value in moments.items():
            torch.testing.assert_close(fsdp_state["optimizer"]["state"][number][name], value, **WEIGHTS)

    # eval reads the FSDP run as any other
    main(["eval", "--ckpt", str(tmp_path / "tinygpt" / "fsdp")])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["loss"] == fsdp["val_loss"]

    # per rank: DDP holds everything, FSDP a half (a vocabulary of 87 rows splits 44 + 43)
    for key in ("param_bytes_per_rank", "optimizer_bytes_per_rank"):
        print(f"{key}: ddp {ddp[key]:,} / {ddp1[key]:,}, fsdp {fsdp[key]:,} / {fsdp1[key]:,}")
        assert ddp[key] == ddp1[key] and max(fsdp[key], fsdp1[key]) < 0.6 * ddp[key]
    assert fsdp["param_bytes_per_rank"] + fsdp1["param_bytes_per_rank"] == ddp["param_bytes_per_rank"]


def test_fsdp_refuses_the_lstm_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--preset", "tiny", "--arch", "lstm", "--parallel", "fsdp"]
    assert "--parallel fsdp shards the GPT's blocks" in assert_one_line_error(main, argv, capsys)
    assert list(tmp_path.iterdir()) == []
