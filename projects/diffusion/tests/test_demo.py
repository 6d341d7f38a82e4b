"""The demo, served on 127.0.0.1 and called through gradio_client, as a user's browser would: the class is one of
the dropdown's names, and the samples stream in while they are denoised."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffusion.artifacts import load_pipeline
from diffusion.demo import build_demo
from diffusion.sample import make_grid
from dlshared.display import markdown_text
from dlshared.testing import served_demo


@pytest.fixture(scope="module")
def client(tiny_run, runs_root):

    demo = build_demo(Path(tiny_run["run_dir"]), runs=runs_root / "no-vae-here")
    with served_demo(demo) as client:
        yield client


@pytest.mark.parametrize("scheduler", ["ddim", "ddpm", "dpm", "diffusers-ddim"])
def test_generate_returns_a_grid_and_a_denoising_strip(client, scheduler):
    grid, strip, message = client.predict("4", scheduler, 5, 2.0, 0, api_name="/generate")
    assert "class **4**" in message
    assert Image.open(grid).size == (4 * 18 * 4, 4 * 18 * 4)  # 4x4 tiles of 16 px + 1 px border, x4
    assert Image.open(strip).size[0] == 5 * 18 * 6  # 5 steps -> 5 trajectory points


@pytest.mark.parametrize(
    "inputs, expected",
    [
        ((None, "ddim", 5, 2.0, 0), "Choose a class"),
        (("3", "ddim", 0, 2.0, 0), "steps must be a whole number between 1 and 1000, got 0"),
        (("3", "ddim", 2000, 2.0, 0), "steps must be a whole number between 1 and 1000, got 2000"),
        (("3", "ddim", None, 2.0, 0), "Fill in every field"),
        (("3", "ddim", 5, 2.0, -1), "seed must be a whole number between 0 and 4294967295"),
        (("3", "ddim", 5, 2.0, 2**70), "seed must be a whole number between 0 and 4294967295"),
    ],
    ids=[
        "no-class",
        "zero-steps",
        "too-many-steps",
        "empty-steps",
        "seed-minus-1",
        "huge-seed",
    ],
)
def test_bad_inputs_get_a_message(client, inputs, expected):
    grid, strip, message = client.predict(*inputs, api_name="/generate")
    assert expected in message and grid is None and strip is None
    assert "--" not in message  # a demo message, not a CLI flag


@pytest.mark.parametrize("bad", ["10", "-1", "four", 4], ids=["10", "minus-1", "a-word", "an-index"])
def test_a_class_that_is_not_a_choice_is_refused_naming_the_choices(client, bad):
    """The API can send anything; Gradio refuses a value that is not one of the dropdown's names, saying which are
    (the page's dropdown offers only those). An index is not a name: the API speaks the names the page shows."""
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=r"not in the list of choices: \['0', '1', .*'9'\]"):
        client.predict(bad, "ddim", 5, 2.0, 0, api_name="/generate")


def test_generate_streams_the_denoising_then_the_final_grid(client, tiny_run):
    """The handler is a generator: the page gets the x_0 estimates every few steps (every step of 5), then the
    final grid, which holds the very samples the pipeline draws with that seed (PNG: not a pixel lost)."""
    job = client.submit("4", "ddim", 5, 2.0, 0, api_name="/generate")
    job.result()
    *live, final = job.outputs()
    assert [message for _, _, message in live] == [
        f"Denoising: step {step} of 5 (the x_0 estimates so far)" for step in range(1, 5)
    ]
    assert final[2].startswith("16 samples of class **4**")
    pipe = load_pipeline(Path(tiny_run["run_dir"]))
    samples = pipe(torch.full((16,), 4), 5, 2.0, torch.Generator().manual_seed(0), "ddim").images
    expected = make_grid(samples, columns=4)
    assert np.array_equal(np.asarray(Image.open(final[0])), expected)
    assert not np.array_equal(np.asarray(Image.open(live[0][0])), expected)  # the first update: an early estimate
    first_strip, final_strip = (np.asarray(Image.open(strip)) for strip in (live[0][1], final[1]))
    cell = 18 * 6  # the strip keeps its 5 cells, white until their step is reached
    assert first_strip.shape == final_strip.shape == (cell, 5 * cell)
    assert first_strip[:, -cell:].min() == 255 and final_strip[:, -cell:].min() < 255


def test_number_fields_refuse_what_gradio_lets_through():
    """A gr.Number bounds nothing (and rounds, but the handler is a plain function too): NaN, infinity, a
    fraction, a word each become a message."""
    from diffusion.demo import whole_number
    from dlshared.cli import UserError

    cases = [(float("nan"), "finite"), (float("inf"), "finite"), ("3x", "a number"), (None, "Fill in"), (2.5, "2.5")]
    for value, message in cases:
        with pytest.raises(UserError, match=message):
            whole_number(value, "The class", 0, 9)
    assert whole_number(3.0, "The class", 0, 9) == 3


def test_names_from_card_json_are_shown_as_text_not_markup(tiny_run, tmp_path):
    import json
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run["run_dir"], run_dir)
    card = json.loads((run_dir / "card.json").read_text(encoding="utf-8"))
    classes = ["<img src=x onerror=alert(1)>", *card["classes"][1:]]
    (run_dir / "card.json").write_text(
        json.dumps({**card, "classes": classes, "source": "<script>x</script>"}), encoding="utf-8"
    )
    demo = build_demo(run_dir, runs=tmp_path)
    page = json.dumps(demo.get_config_file())  # the header Markdown, among the rest of the page
    assert "&lt;script&gt;x&lt;" in page and "<script>" not in page
    with served_demo(demo) as client:
        _, _, message = client.predict(classes[0], "ddim", 1, 2.0, 0, api_name="/generate")
    assert markdown_text(classes[0]) in message and "&lt;img src\\=x" in message and "<img" not in message


def test_interpolation_without_a_vae_run_explains_what_to_do(client):
    strip, message = client.predict(1, 7, 8, api_name="/interpolate")
    assert strip is None and "train-vae" in message


def test_interpolation_tab_walks_a_trained_vae(tiny_run, tmp_path):
    import dataclasses

    from diffusion.autoencoder import train_vae
    from diffusion.baselines_config import VAE_PRESETS

    vae = train_vae(dataclasses.replace(VAE_PRESETS["tiny"], out=tmp_path, name="vae-tiny", eval_samples=0))
    demo = build_demo(Path(tiny_run["run_dir"]), runs=tmp_path)  # finds the VAE run under runs/diffusion/
    with served_demo(demo) as client:
        strip, message = client.predict(1, 7, 6, api_name="/interpolate")
        assert "from a real 1 to a real 7" in message
        assert Image.open(strip).size == (6 * 18 * 6, 18 * 6)  # 6 decoded points in a row
        _, message = client.predict(1, 12, 6, api_name="/interpolate")
        assert "between 0 and 9" in message
    assert Path(vae["run_dir"]).name == "vae-tiny"
