"""LoRA adapters: the trainable-parameter report, save/load round trips, and merge_and_unload parity."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tuner.base import build_model, build_tokenizer
from tuner.cli import main
from tuner.config import PRESETS
from tuner.lora import lora_config, trainable_report

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


def tiny_base(cfg=PRESETS["tiny"]):
    """The tiny preset's embedded Llama, seeded: the same weights on every call."""
    torch.manual_seed(cfg.seed)
    return build_model(build_tokenizer(), cfg.n_layer, cfg.n_head, cfg.hidden, cfg.intermediate, cfg.max_positions)


def lora_model(**changes):
    from peft import get_peft_model

    cfg = replace(PRESETS["tiny"], **changes)
    model = get_peft_model(tiny_base(cfg), lora_config(cfg))
    with torch.no_grad():  # B starts at zero (adapter = identity); make it non-zero so the checks mean something
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return model.eval()


def test_trainable_report_counts_only_the_adapters():
    model = lora_model(lora_r=4, target_modules=("q_proj", "v_proj"))
    report = trainable_report(model)
    hidden, layers = PRESETS["tiny"].hidden, PRESETS["tiny"].n_layer
    assert report["trainable_params"] == layers * 2 * 4 * (hidden + hidden)  # A (r, in) + B (out, r), q and v
    assert report["base_params"] == sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)


def test_adapter_save_and_load_give_the_same_logits(tmp_path):
    from peft import PeftModel

    model = lora_model()
    ids = torch.randint(3, 90, (2, 12))
    with torch.no_grad():
        before = model(input_ids=ids).logits
    model.save_pretrained(tmp_path / "adapter")
    files = sorted(p.name for p in (tmp_path / "adapter").iterdir())
    assert files == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    base = tiny_base()  # the same seed: the same base weights
    loaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, before, atol=1e-6, rtol=0)


def test_merged_model_computes_the_adapter_models_logits():
    model = lora_model(target_modules=("all-linear",))
    ids = torch.randint(3, 90, (2, 12))
    with torch.no_grad():
        adapter_logits = model(input_ids=ids).logits
        merged = model.merge_and_unload()
        assert type(merged).__name__ == "LlamaForCausalLM"
        assert not [n for n, _ in merged.named_parameters() if "lora_" in n]
        torch.testing.assert_close(merged(input_ids=ids).logits, adapter_logits, atol=1e-4, rtol=0)


def test_export_writes_a_folder_transformers_loads_without_peft(tiny_run, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    main(["export", "--ckpt", tiny_run["run_dir"], "--out", str(tmp_path / "merged")])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["architecture"] == "LlamaForCausalLM" and result["max_abs_logit_diff"] < 1e-4
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    tok = AutoTokenizer.from_pretrained(tmp_path / "merged")
    ids = tok("User: What is 2 plus 3?\nAssistant:", return_tensors="pt", add_special_tokens=False)
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
    assert Path(result["run_dir"]) == Path(tiny_run["run_dir"])
    assert_model_card(tmp_path / "merged" / "README.md", Path(tiny_run["run_dir"]), "dpo")


def assert_model_card(path: Path, run_dir: Path, stage: str) -> None:
    """The merged folder's README.md is a Hub model card carrying the run's own held-out scores of that stage."""
    from huggingface_hub import ModelCard

    card = ModelCard.load(path)
    saved = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "text-generation"
    assert {"lora", "merged", stage} <= set(card.data.tags) and card.data.datasets == ["capstones-addition"]
    assert card.data.base_model is None  # the run pretrained its own base: no Hub model to link to
    scores = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert scores["task_accuracy"] == saved[f"{stage}/task"] and scores["correct"] == saved[f"{stage}/correct"]
    assert scores["preference_accuracy"] == saved[f"{stage}/pref_acc"]
    assert "```bash\nuv run tuner train --preset tiny\n```" in card.text
    for section in ("## Data", "## Training", "## Results", "## Limits"):
        assert section in card.text
