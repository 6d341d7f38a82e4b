"""The demo, served on 127.0.0.1 and called through gradio_client, as a user's browser would."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from diffusion.demo import build_demo
from dlshared.demo import launch
from dlshared.testing import free_port


@pytest.fixture(scope="module")
def client(tiny_run, runs_root):
    from gradio_client import Client

    demo = build_demo(Path(tiny_run["run_dir"]), runs=runs_root / "no-vae-here")
    url = launch(demo, port=free_port(), block=False)
    assert url.startswith("http://127.0.0.1:")
    yield Client(url, verbose=False)
    demo.close()


@pytest.mark.parametrize("scheduler", ["ddim", "ddpm", "dpm", "diffusers-ddim"])
def test_generate_returns_a_grid_and_a_denoising_strip(client, scheduler):
    grid, strip, message = client.predict(4, scheduler, 5, 2.0, 0, api_name="/generate")
    assert "class **4**" in message
    assert Image.open(grid).size == (4 * 18 * 4, 4 * 18 * 4)  # 4x4 tiles of 16 px + 1 px border, x4
    assert Image.open(strip).size[0] == 5 * 18 * 6  # 5 steps -> 5 trajectory points


@pytest.mark.parametrize(
    "inputs, expected",
    [
        ((10, "ddim", 5, 2.0, 0), "between 0 and 9"),
        ((-1, "ddim", 5, 2.0, 0), "between 0 and 9"),
        ((3, "ddim", 0, 2.0, 0), "steps must be at least 1"),
        ((3, "ddim", 2000, 2.0, 0), "at most 1000"),
        ((3, "ddim", None, 2.0, 0), "Fill in every field"),
    ],
    ids=["class-10", "class-minus-1", "zero-steps", "too-many-steps", "empty-steps"],
)
def test_bad_inputs_get_a_message(client, inputs, expected):
    grid, strip, message = client.predict(*inputs, api_name="/generate")
    assert expected in message and grid is None and strip is None
    assert "--" not in message  # a demo message, not a CLI flag


def test_interpolation_without_a_vae_run_explains_what_to_do(client):
    strip, message = client.predict(1, 7, 8, api_name="/interpolate")
    assert strip is None and "train-vae" in message


def test_interpolation_tab_walks_a_trained_vae(tiny_run, tmp_path):
    import dataclasses

    from gradio_client import Client

    from diffusion.autoencoder import train_vae
    from diffusion.baselines_config import VAE_PRESETS

    vae = train_vae(dataclasses.replace(VAE_PRESETS["tiny"], out=tmp_path, name="vae-tiny", eval_samples=0))
    demo = build_demo(Path(tiny_run["run_dir"]), runs=tmp_path)  # finds the VAE run under runs/diffusion/
    url = launch(demo, port=free_port(), block=False)
    try:
        strip, message = Client(url, verbose=False).predict(1, 7, 6, api_name="/interpolate")
        assert "from a real 1 to a real 7" in message
        assert Image.open(strip).size == (6 * 18 * 6, 18 * 6)  # 6 decoded points in a row
        _, message = Client(url, verbose=False).predict(1, 12, 6, api_name="/interpolate")
        assert "between 0 and 9" in message
    finally:
        demo.close()
    assert Path(vae["run_dir"]).name == "vae-tiny"
