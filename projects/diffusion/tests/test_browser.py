"""The demo as a person meets it, in headless Chromium (the tests' tiny diffusion run, then the shipped quick
pipeline): zero steps show a message in the page; a class chosen from the dropdown and a press of the button end with
the final grid of samples, the very pixels the pipeline draws, and the denoising strip."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffusion.artifacts import load_pipeline
from diffusion.config import SHIPPED
from diffusion.demo import build_demo
from diffusion.sample import make_grid
from dlshared.browser import demo_page, expect_text, screenshot, served_demo_page
from dlshared.demo import launch
from dlshared.testing import free_port

STEPS_FIELD = "Steps (1-1000; DDPM wants ~1000)"
ASSETS = Path(__file__).parents[1] / "assets"


@pytest.mark.browser
def test_choose_a_class_generate_and_see_the_final_grid(tiny_run, runs_root):
    run_dir = Path(tiny_run["run_dir"])
    samples = load_pipeline(run_dir)(torch.full((16,), 4), 5, 2.0, torch.Generator().manual_seed(0), "ddim").images
    final_grid = make_grid(samples, columns=4)
    demo = build_demo(run_dir, runs=runs_root / "no-vae-here")
    url = launch(demo, port=free_port(), block=False)
    try:
        with demo_page(url) as page:
            page.get_by_label(STEPS_FIELD).fill("0")
            page.get_by_role("button", name="Generate").click()
            expect_text(page, "⚠️")  # zero steps: a message, not a trace

            page.get_by_label("Class", exact=True).click()  # the dropdown opens on the class names
            page.get_by_role("option", name="4", exact=True).click()
            page.get_by_label(STEPS_FIELD).fill("5")
            page.get_by_role("button", name="Generate").click()
            expect_text(page, "samples of class 4, sampler ddim, 5 steps")  # the final update's message
            served = page.locator("img[src*='/file=']")  # the grid and the denoising strip (served files)
            served.nth(1).wait_for()
            sources = served.evaluate_all("images => images.map(image => image.src)")
            shown = [np.asarray(Image.open(io.BytesIO(page.request.get(src).body()))) for src in sources]
    finally:
        demo.close()
    assert any(np.array_equal(picture, final_grid) for picture in shown), [picture.shape for picture in shown]


@pytest.mark.browser
def test_the_shipped_pipeline_draws_a_digit_in_the_page(runs_root, tmp_path):
    demo = build_demo(SHIPPED, runs=runs_root / "no-vae-here")  # what `diffusion demo` serves on a fresh clone
    with served_demo_page(demo) as page:
        page.get_by_label("Class", exact=True).click()
        page.get_by_role("option", name="7", exact=True).click()
        page.get_by_label(STEPS_FIELD).fill("20")
        page.get_by_role("button", name="Generate").click()
        expect_text(page, "samples of class 7, sampler ddim, 20 steps")
        page.locator("img[src*='/file=']").nth(1).wait_for()  # the grid and the strip
        screenshot(page, ASSETS / "demo.png", tmp_path)
