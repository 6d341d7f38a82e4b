"""Export to a Hugging Face model folder that `transformers` loads without this project:

    arch gpt2  -> GPT2LMHeadModel   (learned positions, LayerNorm, GELU; Conv1D weights are stored transposed)
    arch llama -> LlamaForCausalLM  (RoPE in the same half-split layout, RMSNorm, SwiGLU; q/k/v split apart)

The tokenizer goes along as tokenizer.json (PreTrainedTokenizerFast), so `AutoTokenizer` and
`AutoModelForCausalLM.from_pretrained(folder)` are all a user (or the `tuner` project, via `--base`) needs.
After writing, the export loads the folder back with transformers and compares logits with ours.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import torch

from dlshared.checkpoint import read_json_object
from dlshared.cli import UserError
from dlshared.configs import WHERE_FIELDS
from dlshared.hub import push_folder
from dlshared.hubdata import parse_hub_id
from dlshared.modelcard import Result, train_command, write_model_card
from dlshared.outputs import staged_output

from .artifacts import LoadedModel, check_device, load_model, resolve_checkpoint
from .config import PRESETS, ExportArgs
from .model import GPT


def _bias(linear: torch.nn.Module, size: int) -> torch.Tensor:
    return linear.bias.detach() if linear.bias is not None else torch.zeros(size)


def gpt2_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    cfg, out = model.cfg, {}
    C = cfg.n_embd
    out["transformer.wte.weight"] = model.tok_emb.weight
    out["transformer.wpe.weight"] = model.pos_emb.weight
    for i, block in enumerate(model.blocks):
        p = f"transformer.h.{i}."
        out[p + "ln_1.weight"], out[p + "ln_1.bias"] = block.norm1.weight, _bias(block.norm1, C)
        out[p + "ln_2.weight"], out[p + "ln_2.bias"] = block.norm2.weight, _bias(block.norm2, C)
        out[p + "attn.c_attn.weight"] = block.attn.qkv.weight.t()  # Conv1D: (in, out)
        out[p + "attn.c_attn.bias"] = _bias(block.attn.qkv, 3 * C)
        out[p + "attn.c_proj.weight"] = block.attn.proj.weight.t()
        out[p + "attn.c_proj.bias"] = _bias(block.attn.proj, C)
        out[p + "mlp.c_fc.weight"] = block.mlp.up.weight.t()
        out[p + "mlp.c_fc.bias"] = _bias(block.mlp.up, cfg.mlp_hidden)
        out[p + "mlp.c_proj.weight"] = block.mlp.down.weight.t()
        out[p + "mlp.c_proj.bias"] = _bias(block.mlp.down, C)
    out["transformer.ln_f.weight"], out["transformer.ln_f.bias"] = model.norm.weight, _bias(model.norm, C)
    out["lm_head.weight"] = model.tok_emb.weight
    return out


def llama_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    cfg, out = model.cfg, {}
    C = cfg.n_embd
    out["model.embed_tokens.weight"] = model.tok_emb.weight
    for i, block in enumerate(model.blocks):
        p = f"model.layers.{i}."
        out[p + "input_layernorm.weight"] = block.norm1.weight
        out[p + "post_attention_layernorm.weight"] = block.norm2.weight
        for name, w in zip(("q", "k", "v"), block.attn.qkv.weight.split(C), strict=True):
            out[p + f"self_attn.{name}_proj.weight"] = w
        out[p + "self_attn.o_proj.weight"] = block.attn.proj.weight
        out[p + "mlp.gate_proj.weight"] = block.mlp.gate.weight
        out[p + "mlp.up_proj.weight"] = block.mlp.up.weight
        out[p + "mlp.down_proj.weight"] = block.mlp.down.weight
        if cfg.bias:
            for name, b in zip(("q", "k", "v"), block.attn.qkv.bias.split(C), strict=True):
                out[p + f"self_attn.{name}_proj.bias"] = b
            out[p + "self_attn.o_proj.bias"] = block.attn.proj.bias
            for name in ("gate", "up", "down"):
                out[p + f"mlp.{name}_proj.bias"] = getattr(block.mlp, name).bias
    out["model.norm.weight"] = model.norm.weight
    out["lm_head.weight"] = model.tok_emb.weight
    return out


def to_hf(model: GPT, eos_token_id: int | None = None):
    """A transformers model holding `model`'s weights (float32, eval mode)."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    cfg = model.cfg
    if cfg.arch == "gpt2":
        hf_config = GPT2Config(
            vocab_size=cfg.vocab_size,
            n_positions=cfg.block_size,
            n_embd=cfg.n_embd,
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            n_inner=cfg.mlp_hidden,
            activation_function="gelu",
            layer_norm_epsilon=cfg.norm_eps,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            tie_word_embeddings=True,
            bos_token_id=eos_token_id,
            eos_token_id=eos_token_id,
        )
        hf_model, state = GPT2LMHeadModel(hf_config), gpt2_state_dict(model)
    else:
        hf_config = LlamaConfig(
            vocab_size=cfg.vocab_size,
            hidden_size=cfg.n_embd,
            intermediate_size=cfg.mlp_hidden,
            num_hidden_layers=cfg.n_layer,
            num_attention_heads=cfg.n_head,
            num_key_value_heads=cfg.n_head,
            head_dim=cfg.head_dim,
            max_position_embeddings=cfg.block_size,
            rms_norm_eps=cfg.norm_eps,
            rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
            tie_word_embeddings=True,
            attention_bias=cfg.bias,
            mlp_bias=cfg.bias,
            hidden_act="silu",
            bos_token_id=eos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=None,
        )
        hf_model, state = LlamaForCausalLM(hf_config), llama_state_dict(model)
    state = {k: v.detach().float().cpu().contiguous() for k, v in state.items()}
    missing, unexpected = hf_model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("attn.bias") and not k.endswith("masked_bias")]
    if missing or unexpected:
        raise RuntimeError(f"weight mapping is incomplete: missing {missing}, unexpected {unexpected}")
    hf_model.tie_weights()
    return hf_model.eval()


@torch.no_grad()
def max_logit_difference(model: GPT, hf_model, ids: torch.Tensor) -> float:
    ours, _ = model.float()(ids)
    theirs = hf_model(input_ids=ids).logits
    return (ours - theirs).abs().max().item()


def export_hf(args: ExportArgs) -> dict:
    """The run as a transformers folder, written into a staging folder that becomes --out once it is complete and
    checked (never into a folder an export did not write, nor over the run it reads)."""
    from transformers import AutoModelForCausalLM

    check_device(args.device)  # the export itself runs on the CPU; a bad name is still refused
    loaded: LoadedModel = load_model(resolve_checkpoint(args.ckpt, args.runs), "cpu")
    model, tokenizer = loaded.model, loaded.tokenizer
    if model.cfg.arch == "lstm" or model.cfg.objective == "mlm":
        what = "an LSTM" if model.cfg.arch == "lstm" else "a masked-LM encoder (--objective mlm)"
        raise UserError(
            f"{loaded.run_dir} holds {what}: export writes GPT-2 / Llama causal LMs only; "
            f"its model.safetensors + model_config.json are the portable form (tinygpt's load_model reads them)"
        )
    out = Path(args.out).resolve()
    with staged_output(out, args.overwrite, sources=(loaded.run_dir,)) as stage:
        hf_tokenizer = tokenizer.to_hf()
        hf_model = to_hf(model, hf_tokenizer.eos_token_id)
        hf_model.save_pretrained(stage)  # model.safetensors + config.json
        hf_tokenizer.save_pretrained(stage)
        reloaded = AutoModelForCausalLM.from_pretrained(stage).eval()
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(tokenizer.vocab_size, (2, model.cfg.block_size), generator=generator)
        diff = max_logit_difference(model, reloaded, ids)
        write_card(stage, loaded.run_dir, type(reloaded).__name__, {**asdict(model.cfg), "tokenizer": tokenizer.kind})
    result = {
        "out": str(out),
        "architecture": type(reloaded).__name__,
        "max_abs_logit_diff": diff,
        "run_dir": str(loaded.run_dir),
    }
    if args.push_to_hub:  # only a complete folder: staged_output has renamed it into place
        result["pushed"] = push_folder(out, args.push_to_hub)
    return result


DATASETS = {"stdlib": "python-stdlib", "shakespeare": "karpathy/tiny_shakespeare"}
"""--dataset -> dataset id (the Hub's where it has one)."""


def write_card(stage: Path, run_dir: Path, architecture: str, shape: dict) -> Path:
    """README.md in the Hub's format (dlshared.modelcard), from the run's config.json and metrics.json. A folder
    that `save_model` wrote outside `tinygpt train` (day 28 does) has neither: its card says so, and `shape` (the
    model's own config and tokenizer kind) describes the model."""
    recorded = read_json_object(run_dir / "config.json") if (run_dir / "config.json").is_file() else {}
    config = {**shape, **recorded}
    metrics = read_json_object(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else {}
    text_file = config.get("data")
    hub = parse_hub_id(text_file)  # a Hub dataset's repo is its id; a local file is named by its stem
    if text_file:
        data_id = hub.repo if hub else Path(text_file).stem
    else:
        data_id = DATASETS.get(config.get("dataset"), "python-stdlib")
    data_name = metrics.get("data") or str(text_file or config.get("dataset"))
    unit = "character" if config.get("tokenizer") == "char" else "token"
    results = []
    if metrics.get("val_loss") is not None:
        loss = metrics["val_loss"]
        results = [
            Result("text-generation", data_id, data_name, "loss", loss, f"loss (nats per {unit})", "validation"),
            Result("text-generation", data_id, data_name, "perplexity", round(math.exp(loss), 4), None, "validation"),
        ]
    return write_model_card(
        stage,
        title=f"tinygpt: a {config.get('arch')} model of {data_name}",
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=["pytorch-capstones", "text-generation", str(config.get("arch")), f"{config.get('tokenizer')}-tokenizer"],
        datasets=[data_id],
        license="mit",
        results=results,
        summary=_summary(architecture, config, metrics.get("parameters")),
        data=(
            f"{data_name}: the first 90% of its characters for training, the last 10% for validation"
            + (f" (of its first {config['max_chars']:,} characters)." if config.get("max_chars") else ".")
        ),
        command=train_command(
            "tinygpt",
            config,
            PRESETS,
            "quick",
            ignore=(*WHERE_FIELDS, "progress", "log_interval", "sample_tokens", "peak_flops"),  # no effect on weights
            processes=metrics.get("processes", 1),
        )
        if recorded
        else f"# not recorded: {run_dir.name} holds no run config.json (saved by save_model, not `tinygpt train`)",
        limits=(
            "A course-sized model: it continues text in the style of its training text, with no instruction"
            " tuning, no safety training and no knowledge to rely on; its output may be wrong or nonsensical."
            f" The loss is nats per {unit} on the validation split of its own text, so it compares only with runs"
            " of the same tokenizer and text. The weights inherit the terms of use of the text they were trained on."
        ),
        settings_file=None,  # config.json here is transformers' own; the command above is the run's settings
    )


def _summary(architecture: str, config: dict, parameters: int | None) -> str:
    size = f"{parameters:,} parameters: " if parameters else ""
    return (
        f"A small {architecture} ({size}{config.get('n_layer')} layers, {config.get('n_head')} heads, width"
        f" {config.get('n_embd')}, context {config.get('block_size')} tokens, a {config.get('tokenizer')} tokenizer)"
        " trained from scratch by the `tinygpt` project of PyTorch Capstones. `AutoModelForCausalLM.from_pretrained"
        "(FOLDER)` and `AutoTokenizer.from_pretrained(FOLDER)` load it with transformers alone."
    )
