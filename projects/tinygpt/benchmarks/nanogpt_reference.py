"""nanoGPT reference benchmark: karpathy/nanoGPT's train.py, char-level Shakespeare, on CPU.

This script reproduces what nanoGPT's ``train.py`` does for the char-level Shakespeare recipe, so that
tinygpt's training throughput can be compared with nanoGPT's at the same settings on the same machine.
The model is nanoGPT's own ``model.py``, vendored verbatim as ``nanogpt_model.py`` (MIT licence,
Copyright (c) 2022 Andrej Karpathy). The training loop below follows ``train.py`` line for line:
``get_batch``, ``estimate_loss``, ``get_lr`` (linear warm-up, then cosine decay to ``min_lr``),
``model.configure_optimizers``, gradient accumulation, the (no-op off float16) GradScaler calls,
gradient clipping, ``zero_grad(set_to_none=True)``, and the per-iteration timing: ``dt`` is the
wall-clock time between consecutive iterations, taken with ``time.time()`` right after
``optimizer.zero_grad``, so it includes the ``loss.item()`` sync of the previous logged iteration.

Presets (``--preset``):

* ``shakespeare-char-cpu``: the CPU recipe from nanoGPT's README::

      python train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20
        --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
        --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0

* ``shakespeare-char``: ``config/train_shakespeare_char.py`` as is (6 layers, 6 heads, 384 wide, block 256,
  batch 64, dropout 0.2, 5000 iterations), run on the CPU with compile off, as that config's own comment
  says to do on a machine without a GPU.

Where this script departs from train.py, and why:

* Data: train.py reads ``train.bin``/``val.bin`` written by ``data/shakespeare_char/prepare.py`` and
  re-opens them with ``np.memmap`` on every batch. Here the text is encoded in memory the same way
  (vocabulary = sorted set of characters, first 90% train, last 10% val, ``np.uint16``), and batches are
  sliced from those arrays. The offsets (``torch.randint``) and the stacking are train.py's.
* dtype: on a machine without CUDA, train.py's default dtype resolves to ``'float16'``, its
  ``torch.cuda.amp.GradScaler`` disables itself (no CUDA) and its ``ctx`` is ``nullcontext()`` for every
  CPU dtype, so nanoGPT trains in plain float32 there. ``--dtype float32`` (the default) is exactly that.
  ``--dtype bfloat16`` is an addition: it wraps forward passes in
  ``torch.amp.autocast(device_type='cpu', dtype=torch.bfloat16)``, which train.py never does on CPU.
* No checkpoints are written, no wandb, no DDP (a single process, so ``seed_offset`` is 0).
* Eval time is excluded from the throughput: train.py's ``dt`` for an iteration that runs
  ``estimate_loss()`` includes that evaluation; here the evaluation's own duration is subtracted from that
  iteration's ``dt`` before the steady-state figures are computed. The first ``--warmup-skip`` iterations
  are also left out of them.
* ``--max-iters`` changes only ``max_iters`` (as ``--max_iters`` does in nanoGPT): ``lr_decay_iters`` keeps
  the preset's value. Like train.py, the loop runs iterations ``0 .. max_iters`` inclusive, i.e.
  ``max_iters + 1`` optimizer steps.

The final ``train_loss_estimate``/``val_loss_estimate`` are those of the last ``estimate_loss()`` (the mean over
``eval_iters`` random batches of each split; tinygpt's estimates take as many windows, evenly spaced): if one ran at
``iter_num == max_iters`` (nanoGPT's last printed eval) it is reused, otherwise one more runs after the loop.
``--full-val-loss`` adds ``val_loss``: every non-overlapping window of the validation split scored once, tinygpt's
``val_loss`` (its ``eval`` verb), so the two projects can be compared on one quantity that has no sampling noise.

The last line printed to stdout is one JSON object with the results.

Provenance: ``model.py``, ``train.py``, ``config/train_shakespeare_char.py`` and
``data/shakespeare_char/prepare.py`` of https://github.com/karpathy/nanoGPT (master), read from a stored
code index; the vendored model.py was cross-checked against two independently stored copies.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nanogpt_model import GPT, GPTConfig  # noqa: E402  (vendored nanoGPT model.py, next to this file)

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "src/tinygpt/data/tinyshakespeare.txt"  # shipped with tinygpt

# train.py's defaults that the Shakespeare recipes do not override
_TRAIN_PY_DEFAULTS = {
    "weight_decay": 1e-1,
    "beta1": 0.9,
    "grad_clip": 1.0,
    "decay_lr": True,
    "bias": False,
}

# config/train_shakespeare_char.py, as is
_SHAKESPEARE_CHAR = {
    **_TRAIN_PY_DEFAULTS,
    "eval_interval": 250,
    "eval_iters": 200,
    "log_interval": 10,
    "gradient_accumulation_steps": 1,
    "batch_size": 64,
    "block_size": 256,
    "n_layer": 6,
    "n_head": 6,
    "n_embd": 384,
    "dropout": 0.2,
    "learning_rate": 1e-3,
    "max_iters": 5000,
    "lr_decay_iters": 5000,
    "min_lr": 1e-4,
    "beta2": 0.99,
    "warmup_iters": 100,
    "compile": False,  # the config's own note for machines without a GPU: compile = False
}

PRESETS = {
    "shakespeare-char": _SHAKESPEARE_CHAR,
    # README: train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20
    #   --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
    #   --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0
    "shakespeare-char-cpu": {
        **_SHAKESPEARE_CHAR,
        "compile": False,
        "eval_iters": 20,
        "log_interval": 1,
        "block_size": 64,
        "batch_size": 12,
        "n_layer": 4,
        "n_head": 4,
        "n_embd": 128,
        "max_iters": 2000,
        "lr_decay_iters": 2000,
        "dropout": 0.0,
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="shakespeare-char-cpu")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="plain-text corpus (tiny Shakespeare)")
    p.add_argument("--max-iters", type=int, help="override the preset's max_iters (lr_decay_iters unchanged)")
    p.add_argument("--eval-interval", type=int, help="override the preset's eval_interval")
    p.add_argument("--eval-iters", type=int, help="override the preset's eval_iters")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model")
    p.add_argument("--seed", type=int, default=1337, help="torch.manual_seed (nanoGPT: 1337 + seed_offset)")
    p.add_argument("--full-val-loss", action="store_true", help="also score every validation window (val_loss)")
    p.add_argument("--warmup-skip", type=int, default=10, help="iterations left out of the steady-state measurement")
    p.add_argument(
        "--log-every",
        type=int,
        help="print a progress line every N iterations (default: preset log_interval)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    wall_t0 = time.time()
    args = parse_args(argv)
    cfg = dict(PRESETS[args.preset])
    for key in ("max_iters", "eval_interval", "eval_iters", "compile"):
        value = getattr(args, key)
        if value is not None:
            cfg[key] = value
    log_every = args.log_every if args.log_every is not None else cfg["log_interval"]
    if log_every < 1 or args.warmup_skip < 0 or cfg["max_iters"] < 0:
        raise SystemExit("--log-every must be >= 1, --warmup-skip and --max-iters >= 0")

    # the names train.py uses, so that the loop below reads like it
    eval_interval, eval_iters, log_interval = cfg["eval_interval"], cfg["eval_iters"], cfg["log_interval"]
    gradient_accumulation_steps = cfg["gradient_accumulation_steps"]
    batch_size, block_size = cfg["batch_size"], cfg["block_size"]
    learning_rate, max_iters, weight_decay = cfg["learning_rate"], cfg["max_iters"], cfg["weight_decay"]
    beta1, beta2, grad_clip = cfg["beta1"], cfg["beta2"], cfg["grad_clip"]
    decay_lr, warmup_iters = cfg["decay_lr"], cfg["warmup_iters"]
    lr_decay_iters, min_lr = cfg["lr_decay_iters"], cfg["min_lr"]
    device, dtype, compile_model = "cpu", args.dtype, cfg["compile"]

    # data, encoded as data/shakespeare_char/prepare.py does
    with open(args.data, encoding="utf-8") as f:
        text = f.read()
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    n = len(text)
    train_data = np.array([stoi[c] for c in text[: int(n * 0.9)]], dtype=np.uint16)
    val_data = np.array([stoi[c] for c in text[int(n * 0.9) :]], dtype=np.uint16)
    meta_vocab_size = len(chars)
    print(f"length of dataset in characters: {n:,}")
    print(f"vocab size: {meta_vocab_size:,}")
    print(f"train has {len(train_data):,} tokens")
    print(f"val has {len(val_data):,} tokens")

    # various inits, derived attributes (train.py, single process)
    seed_offset, ddp_world_size = 0, 1
    tokens_per_iter = gradient_accumulation_steps * ddp_world_size * batch_size * block_size
    print(f"tokens per iteration will be: {tokens_per_iter:,}")
    torch.manual_seed(args.seed + seed_offset)
    torch.backends.cuda.matmul.allow_tf32 = True  # allow tf32 on matmul (no effect on CPU)
    torch.backends.cudnn.allow_tf32 = True  # allow tf32 on cudnn (no effect on CPU)
    device_type = "cuda" if "cuda" in device else "cpu"
    ptdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    # train.py: ctx = nullcontext() if device_type == 'cpu' else torch.amp.autocast(...); bfloat16 on CPU
    # is this script's addition (see the module docstring)
    ctx = nullcontext() if dtype == "float32" else torch.amp.autocast(device_type=device_type, dtype=ptdtype)

    # poor man's data loader
    def get_batch(split):
        data = train_data if split == "train" else val_data
        ix = torch.randint(len(data) - block_size, (batch_size,))
        x = torch.stack([torch.from_numpy((data[i : i + block_size]).astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy((data[i + 1 : i + 1 + block_size]).astype(np.int64)) for i in ix])
        if device_type == "cuda":
            x, y = x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
        else:
            x, y = x.to(device), y.to(device)
        return x, y

    iter_num = 0

    # model init
    model_args = dict(
        n_layer=cfg["n_layer"],
        n_head=cfg["n_head"],
        n_embd=cfg["n_embd"],
        block_size=block_size,
        bias=cfg["bias"],
        vocab_size=None,
        dropout=cfg["dropout"],
    )
    print("Initializing a new model from scratch")
    model_args["vocab_size"] = meta_vocab_size if meta_vocab_size is not None else 50304
    gptconf = GPTConfig(**model_args)
    model = GPT(gptconf)
    model.to(device)

    # initialize a GradScaler. If enabled=False scaler is a no-op (always the case here: no float16)
    scaler = torch.amp.GradScaler(device_type, enabled=(dtype == "float16"))

    # optimizer
    optimizer = model.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), device_type)

    # compile the model
    if compile_model:
        print("compiling the model... (takes a ~minute)")
        model = torch.compile(model)

    # helps estimate an arbitrarily accurate loss over either split using many batches
    @torch.no_grad()
    def estimate_loss():
        out = {}
        model.eval()
        for split in ["train", "val"]:
            losses = torch.zeros(eval_iters)
            for k in range(eval_iters):
                X, Y = get_batch(split)
                with ctx:
                    logits, loss = model(X, Y)
                losses[k] = loss.item()
            out[split] = losses.mean()
        model.train()
        return out

    # this script's addition: tinygpt's `val_loss`, every non-overlapping window of the validation split, each
    # token scored once (estimate_loss draws eval_iters random batches), so both projects report one quantity
    @torch.no_grad()
    def full_val_loss():
        model.eval()
        data = torch.from_numpy(val_data.astype(np.int64))
        starts = torch.arange(0, len(data) - block_size, block_size)
        total = 0.0
        for chunk in starts.split(batch_size):
            x = torch.stack([data[i : i + block_size] for i in chunk]).to(device)
            y = torch.stack([data[i + 1 : i + 1 + block_size] for i in chunk]).to(device)
            with ctx:
                _, loss = model(x, y)
            total += loss.item() * len(chunk)
        model.train()
        return total / len(starts)

    # learning rate decay scheduler (cosine with warmup)
    def get_lr(it):
        # 1) linear warmup for warmup_iters steps
        if it < warmup_iters:
            return learning_rate * (it + 1) / (warmup_iters + 1)
        # 2) if it > lr_decay_iters, return min learning rate
        if it > lr_decay_iters:
            return min_lr
        # 3) in between, use cosine decay down to min learning rate
        decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
        assert 0 <= decay_ratio <= 1
        coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))  # coeff ranges 0..1
        return min_lr + coeff * (learning_rate - min_lr)

    train_s = []  # per iteration: train.py's dt minus the time spent in estimate_loss() in that iteration
    eval_s_total = 0.0
    losses, last_eval_step = None, None

    # training loop
    X, Y = get_batch("train")  # fetch the very first batch
    t0 = time.time()
    local_iter_num = 0  # number of iterations in the lifetime of this process
    raw_model = model  # train.py: model.module if ddp else model
    running_mfu = -1.0
    lossf = float("nan")
    while True:
        # determine and set the learning rate for this iteration
        lr = get_lr(iter_num) if decay_lr else learning_rate
        for param_group in optimizer.param_groups:
            param_group["lr"] = lr

        # evaluate the loss on train/val sets (train.py also writes checkpoints here; this script does not)
        eval_s = 0.0
        if iter_num % eval_interval == 0:
            te = time.time()
            losses = estimate_loss()
            print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
            last_eval_step = iter_num
            eval_s = time.time() - te
            eval_s_total += eval_s

        # forward backward update, with optional gradient accumulation to simulate larger batch size
        # and using the GradScaler if data type is float16
        for _micro_step in range(gradient_accumulation_steps):
            with ctx:
                logits, loss = model(X, Y)
                # scale the loss to account for gradient accumulation
                loss = loss / gradient_accumulation_steps
            # immediately async prefetch next batch while model is doing the forward pass on the GPU
            X, Y = get_batch("train")
            # backward pass, with gradient scaling if training in fp16
            scaler.scale(loss).backward()
        # clip the gradient
        if grad_clip != 0.0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        # step the optimizer and scaler if training in fp16
        scaler.step(optimizer)
        scaler.update()
        # flush the gradients as soon as we can, no need for this memory anymore
        optimizer.zero_grad(set_to_none=True)

        # timing and logging
        t1 = time.time()
        dt = t1 - t0
        t0 = t1
        train_s.append(dt - eval_s)
        if iter_num % log_interval == 0:
            # get loss as float. note: this is a CPU-GPU sync point
            # scale up to undo the division above, approximating the true total loss (exact would have been a sum)
            lossf = loss.item() * gradient_accumulation_steps
            if local_iter_num >= 5:  # let the training loop settle a bit
                mfu = raw_model.estimate_mfu(batch_size * gradient_accumulation_steps, dt)
                running_mfu = mfu if running_mfu == -1.0 else 0.9 * running_mfu + 0.1 * mfu
        if iter_num % log_every == 0:
            if iter_num % log_interval != 0:
                lossf = loss.item() * gradient_accumulation_steps
            print(
                f"iter {iter_num}: loss {lossf:.4f}, time {dt * 1000:.2f}ms, mfu {running_mfu * 100:.2f}%"
                + (f" (eval {eval_s * 1000:.0f}ms of it)" if eval_s else ""),
                flush=True,
            )
        iter_num += 1
        local_iter_num += 1

        # termination conditions
        if iter_num > max_iters:
            break

    if last_eval_step != max_iters:  # no estimate_loss() at the last step: run one now
        te = time.time()
        losses = estimate_loss()
        eval_s_total += time.time() - te
        last_eval_step = iter_num
        print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")

    steady = train_s[args.warmup_skip :]
    steady_tokens_per_s = tokens_per_iter * len(steady) / sum(steady) if steady else None
    result = {
        "preset": args.preset,
        "dtype": dtype,
        "compile": bool(compile_model),
        "iters": len(train_s),
        "max_iters": max_iters,
        "warmup_skip": args.warmup_skip,
        "steady_iters": len(steady),
        "params": raw_model.get_num_params(),
        "tokens_per_iter": tokens_per_iter,
        "steady_tokens_per_s": round(steady_tokens_per_s, 1) if steady else None,
        "ms_per_iter": round(statistics.median(steady) * 1000, 3) if steady else None,
        "ms_per_iter_mean": round(statistics.fmean(steady) * 1000, 3) if steady else None,
        "train_loss_estimate": round(float(losses["train"]), 4),
        "val_loss_estimate": round(float(losses["val"]), 4),
        **({"val_loss": round(full_val_loss(), 4)} if args.full_val_loss else {}),
        "final_eval_step": last_eval_step,
        "eval_s": round(eval_s_total, 3),
        "torch": torch.__version__,
        "num_threads": torch.get_num_threads(),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "wall_s": round(time.time() - wall_t0, 3),
    }
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
