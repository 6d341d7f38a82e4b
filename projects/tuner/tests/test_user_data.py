"""A user's own data and base model: `train --data pairs.jsonl` runs DPO on the file and reports held-out
preference accuracy; an SFT file or a chat-messages file trains SFT; a tinygpt-style export is a --base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tuner.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
TINY = ["--preset", "tiny"]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_train_on_a_users_preference_file(tiny_run, tmp_path, capsys):
    pairs = [{"prompt": f"Q{i}: is the sky blue?", "chosen": " Yes.", "rejected": " No!"} for i in range(20)]
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    base = str(Path(tiny_run["run_dir"]) / "base")  # a local HF folder as --base: no pretraining stage
    argv = ["--data", str(data), "--base", base, "--out", str(tmp_path), "--name", "mine"]
    main(["train", *TINY, *argv, "--dpo-sft-weight", "0"])  # plain DPO: no SFT term in the loss
    m = last_json(capsys)
    assert m["dpo_loss_first"] == pytest.approx(0.6931, abs=1e-3)  # log 2: the policy starts as the reference
    assert m["data"] == str(data) and m["heldout_pairs"] == 2  # 10% of 20 held out
    assert 0 <= m["dpo/pref_acc"] <= 1 and 0 <= m["sft/logp_pref_acc"] <= 1
    assert "base/task" not in m  # no task metric for a user's file: there is no rule to check
    run = tmp_path / "tuner" / "mine"
    assert not (run / "base").exists() and (run / "dpo" / "adapter_model.safetensors").is_file()
    assert (run / "curves.png").is_file()  # SFT and DPO panels; no pretraining here
    main(["eval", "--ckpt", str(run), "--data", str(data)])  # eval on a whole file
    result = last_json(capsys)
    assert result["heldout_pairs"] == 20
    # no rule to check a user's answers: the table shows the chosen answer beside the base's and the tuned one's
    assert result["pictures"] == {"answers": str(run / "answers.png")} and (run / "answers.png").is_file()


def test_dpo_alone_on_a_base_with_a_fresh_all_linear_adapter(tiny_run, tmp_path, capsys):
    pairs = [{"prompt": f"Q{i}: sky?", "chosen": " Blue.", "rejected": " Red!"} for i in range(10)]
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    base = str(Path(tiny_run["run_dir"]) / "base")
    argv = ["--stage", "dpo", "--data", str(data), "--base", base, "--target-modules", "all-linear"]
    main(["train", *TINY, *argv, "--out", str(tmp_path), "--name", "dpo-only"])
    m = last_json(capsys)
    assert "sft_loss_last" not in m and 0 <= m["dpo/pref_acc"] <= 1  # the reference: the base, adapter off
    hidden, inter, layers, r = 32, 64, 2, 4  # the tiny preset's sizes
    per_layer = r * (4 * 2 * hidden + 3 * (hidden + inter))  # q, k, v, o and gate, up, down
    assert m["lora_trainable_params"] == layers * per_layer


@pytest.mark.parametrize("kind", ["completion", "messages"])
def test_an_sft_file_trains_sft_only(tiny_run, tmp_path, capsys, kind):
    if kind == "completion":
        rows = [{"prompt": f"Say hi {i}:", "completion": " hi"} for i in range(8)]
    else:
        chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
        rows = [{"messages": chat} for _ in range(8)]
    data = write_jsonl(tmp_path / "sft.jsonl", rows)
    base = str(Path(tiny_run["run_dir"]) / "base")
    main(["train", *TINY, "--data", str(data), "--base", base, "--out", str(tmp_path), "--name", kind])
    m = last_json(capsys)
    assert m["sft_loss_last"] > 0 and "dpo_loss_last" not in m
    assert (tmp_path / "tuner" / kind / "sft" / "adapter_model.safetensors").is_file()


def tinygpt_style_export(folder: Path) -> Path:
    """What `tinygpt export` writes for a character model: a LlamaForCausalLM and a tokenizer with only <unk>,
    no eos and no pad (built here: a project never imports another)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    chars = sorted(set("\n !+.0123456789:?ADHQUWabcdehilmnoprstuw"))
    vocab = {c: i for i, c in enumerate(chars)} | {"<unk>": len(chars)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens([AddedToken("<unk>", special=True, normalized=False)])
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>").save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def test_a_tinygpt_export_works_as_base(tmp_path, capsys):
    base = tinygpt_style_export(tmp_path / "tinygpt-hf")
    main(["train", *TINY, "--base", str(base), "--out", str(tmp_path), "--name", "tg"])
    m = last_json(capsys)
    assert "dpo/pref_acc" in m and "sft/task" in m  # answers end at a newline: its eos stand-in
    main(["export", "--ckpt", str(tmp_path / "tuner" / "tg"), "--out", str(tmp_path / "merged")])
    assert last_json(capsys)["max_abs_logit_diff"] < 1e-4
