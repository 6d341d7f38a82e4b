"""The pictures: train's curves.png and eval's attention.png, whose weights must be the ones the model applies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from dlshared.checkpoint import load_resume_state
from dlshared.testing import assert_one_line_error
from tinygpt.cli import main
from tinygpt.config import PRESETS
from tinygpt.model import GPTConfig, build_model
from tinygpt.pictures import attention_maps, head_weights


def assert_png(path: Path, min_width: int = 400, min_height: int = 200) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= min_width and image.height >= min_height, image.size


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("objective", ["clm", "mlm"])
def test_the_drawn_weights_are_the_ones_attention_applies(arch, objective):
    # scaled_dot_product_attention returns no weights: head_weights recomputes them; multiplied by v and projected
    # they must give the block's own attention output (rotary positions and the causal mask included)
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=30, block_size=16, n_layer=2, n_head=2, n_embd=16, arch=arch, objective=objective)
    model = build_model(cfg).eval()
    seen = {}
    attn = model.blocks[1].attn
    attn.register_forward_hook(lambda module, args, output: seen.update(x=args[0], rope=args[1], y=output))
    ids = torch.randint(0, 30, (12,))
    maps = attention_maps(model, ids)
    assert len(maps) == 2 and maps[1].shape == (2, 12, 12)
    weights = head_weights(attn, seen["x"], seen["rope"])  # (1, H, T, T)
    torch.testing.assert_close(weights[0], maps[1])
    v = attn.qkv(seen["x"]).split(cfg.n_embd, dim=2)[2].view(1, 12, 2, 8).transpose(1, 2)  # (1, H, T, D)
    rebuilt = attn.proj((weights @ v).transpose(1, 2).reshape(1, 12, cfg.n_embd))
    torch.testing.assert_close(rebuilt, seen["y"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(maps[1].sum(dim=-1), torch.ones(2, 12))
    future = maps[1].triu(diagonal=1)
    assert (future == 0).all() if objective == "clm" else (future > 0).any()


def test_train_writes_curves_png_and_gives_it_to_tensorboard(tiny_run):
    run_dir = Path(tiny_run["run_dir"])
    assert_png(run_dir / "curves.png")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert "curves" in EventAccumulator(str(run_dir)).Reload().Tags()["images"]
    # the batch loss every log_interval steps is kept with the checkpoint, so a resumed run draws its whole curve
    tiny = PRESETS["tiny"]
    kept = load_resume_state(run_dir / "resume.pt")["batch_losses"]
    assert [record["iter"] for record in kept] == list(range(tiny.log_interval, tiny.max_iters + 1, tiny.log_interval))


def test_eval_draws_the_prompts_attention_into_the_pictures_folder(tiny_run, tmp_path, capsys):
    argv = ["eval", "--ckpt", tiny_run["run_dir"], "--max-windows", "4", "--pictures", str(tmp_path / "pictures")]
    main([*argv, "--prompt", "def f(x):\n    return x"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    path = tmp_path / "pictures" / "attention.png"
    assert printed["pictures"] == {"attention": str(path)}
    assert_png(path)
    assert not (Path(tiny_run["run_dir"]) / "attention.png").exists()  # --pictures, not the run folder


def test_eval_refuses_a_prompt_it_cannot_draw_before_scoring(tiny_run, tmp_path, capsys):
    argv = ["eval", "--ckpt", tiny_run["run_dir"], "--pictures", str(tmp_path)]
    err = assert_one_line_error(main, [*argv, "--prompt", "x" * 40], capsys)
    assert "--prompt is 40 tokens" in err and "at most 32" in err
    assert "--prompt is empty" in assert_one_line_error(main, [*argv, "--prompt", ""], capsys)
    assert list(tmp_path.iterdir()) == []
