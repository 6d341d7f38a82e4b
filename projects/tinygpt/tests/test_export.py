"""Hugging Face export: transformers loads the folder without this project and computes the same logits."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tinygpt.artifacts import load_model
from tinygpt.config import ExportArgs
from tinygpt.export import export_hf, max_logit_difference, to_hf
from tinygpt.model import GPT, GPTConfig


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("bias", [False, True])
def test_hf_models_compute_our_logits(arch, bias):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=61, block_size=32, n_layer=2, n_head=4, n_embd=32, arch=arch, bias=bias))
    with torch.no_grad():  # move norms and biases off their initial values so their mapping is tested too
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    hf_model = to_hf(model.eval())
    expected = "GPT2LMHeadModel" if arch == "gpt2" else "LlamaForCausalLM"
    assert type(hf_model).__name__ == expected
    assert max_logit_difference(model, hf_model, torch.randint(61, (2, 32))) < 1e-4


def test_exported_folder_loads_with_transformers_alone(tiny_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = export_hf(ExportArgs(ckpt=tiny_run["run_dir"], out=tmp_path / "hf"))
    assert result["max_abs_logit_diff"] < 1e-4
    hf_model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    hf_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf")
    ours = load_model(tiny_run["run_dir"], "cpu")
    text = "def main():\n    return 1\n"
    ids = hf_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids == ours.tokenizer.encode(text)
    ids = torch.tensor([ids])
    with torch.no_grad():
        torch.testing.assert_close(hf_model(input_ids=ids).logits, ours.model(ids)[0], atol=1e-4, rtol=1e-4)
        greedy = hf_model.generate(ids, max_new_tokens=8, do_sample=False)[0, ids.size(1) :].tolist()
    from tinygpt.generate import generate

    assert greedy == [t.item() for t in generate(ours.model, ids, 8, temperature=0)]
    assert_model_card(tmp_path / "hf" / "README.md", Path(tiny_run["run_dir"]))


def assert_model_card(path: Path, run_dir: Path) -> None:
    """The folder's README.md is a Hub model card carrying the run's own validation loss and its train command."""
    from huggingface_hub import ModelCard

    card = ModelCard.load(path)
    saved = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "text-generation"
    assert card.data.datasets == ["python-stdlib"] and "llama" in card.data.tags
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert values == {"loss": saved["val_loss"], "perplexity": round(math.exp(saved["val_loss"]), 4)}
    assert "```bash\nuv run tinygpt train --preset tiny\n```" in card.text
    for section in ("## Data", "## Training", "## Results", "## Limits"):
        assert section in card.text
