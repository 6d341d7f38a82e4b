"""The Gradio demo: pick a class (a dropdown of the run's class names), a sampler, steps, guidance and a seed -> the
samples denoised live (every few steps the page shows their current x_0 estimates), then the grid of samples and a
strip of the denoising trajectory of the first one; a second tab walks the VAE's latent space between two real
digits.

`build_demo(run_dir)` only builds the app; `diffusion demo` serves it (dlshared.demo.serve, 127.0.0.1).
Every input is bounded (a class of the model, 1-1000 steps, guidance 0-50, a seed below 2^32, 2-32 points), and
a value out of range, empty, fractional or not finite becomes a message in the page, never a traceback (a class
that is not one of the dropdown's choices is refused by Gradio itself, with a message naming them). Names from the
run's card.json are shown as text, never as markup.
"""

from __future__ import annotations

import math
from pathlib import Path

import gradio as gr
import torch

from dlshared.checkpoint import read_json_object
from dlshared.cli import UserError
from dlshared.display import markdown_text

from .artifacts import load_card, load_model
from .baselines import interpolation_strip
from .config import PROJECT, SAMPLERS, SamplingArgs
from .pipeline import trajectory_steps
from .sample import check_sampling_args, make_grid

GRID_SAMPLES, STRIP_POINTS = 16, 8
LIVE_UPDATES = 10
"""Pictures the page shows while the samples are denoised (the last one the final grid), whatever the steps."""
MAX_SEED = 2**32 - 1
SAMPLER_HELP = "ddim, ddpm: the hand-written steps of schedule.py; diffusers-*: the library's; dpm: DPM-Solver++"


def finite_number(value, what: str) -> float:
    """A number field's value as a float, or a UserError the page shows (empty, not a number, NaN, infinite)."""
    if value is None:
        raise UserError("Fill in every field.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be a number.") from None
    if not math.isfinite(number):
        raise UserError(f"{what} must be a finite number.")
    return number


def whole_number(value, what: str, low: int, high: int) -> int:
    """A number field's value as an int in [low, high], or a UserError the page shows (2.5, 1e300, -1, ...)."""
    number = finite_number(value, what)
    if number != int(number) or not low <= number <= high:
        raise UserError(f"{what} must be a whole number between {low} and {high}, got {number:g}.")
    return int(number)


def grid_image(images: torch.Tensor):
    """The samples [16, C, H, W] in [0, 1] as the page's 4x4 grid."""
    return make_grid(images, columns=4)


def strip_image(points: list[torch.Tensor], length: int):
    """The first sample's x_0 estimates so far, left to right in a strip of `length` cells (white until drawn)."""
    return make_grid(torch.stack(points), columns=length, scale=6) if points else None


def is_finished_vae_run(folder: Path) -> bool:
    if not (folder / "metrics.json").is_file() or not (folder / "card.json").is_file():
        return False
    try:
        return read_json_object(folder / "card.json").get("model") == "vae"
    except UserError:  # another run's damaged card: not a VAE run to offer
        return False


def find_vae_run(vae_run: Path | None, runs: Path) -> Path | None:
    """--vae as given, else the newest finished VAE run under runs/diffusion/, else None."""
    if vae_run is not None:
        return vae_run
    base = Path(runs) / PROJECT
    candidates = [d for d in base.iterdir() if is_finished_vae_run(d)] if base.is_dir() else []
    return max(candidates, key=lambda d: (d / "metrics.json").stat().st_mtime, default=None)


def model_summary(run_dir: Path) -> str:
    """The end-of-training evaluation of the run, in one line."""
    try:
        metrics = run_dir / "metrics.json"
        scores = read_json_object(metrics).get("eval") if metrics.is_file() else None
    except UserError:
        return "metrics.json unreadable"
    if not isinstance(scores, dict) or not {"scheduler", "steps", "guidance", "accuracy", "fid"} <= set(scores):
        return "not evaluated"
    setting = f"{scores['scheduler']}-{scores['steps']}, guidance {scores['guidance']:g}"
    return f"judged accuracy {scores['accuracy']:.1%}, FID {scores['fid']:.2f} ({setting})"


def build_demo(run_dir: Path, vae_run: Path | None = None, runs: Path = Path("runs")) -> gr.Blocks:
    pipe, classes = load_model(run_dir)  # one pipeline; each call picks its sampler
    card = load_card(run_dir)

    def checked_request(class_index, scheduler, steps, guidance, seed) -> tuple[SamplingArgs, int]:
        """The page's values as sampling arguments and a class index, or a UserError the page shows. The dropdown
        sends only its choices through the page; the API may send anything, and gradio refuses what is not a choice."""
        if class_index is None:
            raise UserError("Choose a class.")
        class_index = whole_number(class_index, "The class", 0, len(classes) - 1)
        guidance = finite_number(guidance, "The guidance scale")
        if scheduler not in SAMPLERS:
            raise UserError(f"Choose a sampler among {', '.join(SAMPLERS)}.")
        steps = whole_number(steps, "The number of steps", 1, 1000)  # the cost of a call is capped too
        seed = whole_number(seed, "The seed", 0, MAX_SEED)
        args = SamplingArgs(scheduler=scheduler, steps=steps, guidance=guidance, seed=seed)
        check_sampling_args(args, len(classes), class_index, GRID_SAMPLES)
        return args, class_index

    def run_generate(class_index, scheduler, steps, guidance, seed):
        """A generator, so Gradio streams it: every few steps the grid of the current x_0 estimates (x_t for
        DPM-Solver, which makes none) and the strip so far, then the final samples: the images `diffusion sample`
        draws with the same seed."""
        try:
            args, class_index = checked_request(class_index, scheduler, steps, guidance, seed)
        except UserError as err:
            yield None, None, f"⚠️ {str(err).replace('--class', 'the class').replace('--', '')}"
            return
        labels = torch.full((GRID_SAMPLES,), class_index)
        generator = torch.Generator(args.device).manual_seed(args.seed)  # as sample.generate seeds it
        strip_steps = trajectory_steps(args.steps, min(STRIP_POINTS, args.steps))
        every = math.ceil(args.steps / LIVE_UPDATES)
        strip = []  # the first sample's x_0 estimates at strip_steps
        for i, (x, x0) in enumerate(pipe.denoise(labels, args.steps, args.guidance, generator, args.scheduler)):
            if i in strip_steps or (i + 1) % every == 0:
                estimates = pipe.to_images(x0 if x0 is not None else x)  # decoded once per shown step
            if i in strip_steps:
                strip.append(estimates[0])
            if (i + 1) % every == 0 and i + 1 < args.steps:  # the last step's update is the final one below
                shown = "x_0 estimates" if x0 is not None else "x_t"
                message = f"Denoising: step {i + 1} of {args.steps} (the {shown} so far)"
                yield grid_image(estimates), strip_image(strip, len(strip_steps)), message
        message = (
            f"{GRID_SAMPLES} samples of class **{markdown_text(classes[class_index][:100])}**, sampler "
            f"{args.scheduler}, {args.steps} steps, guidance {args.guidance:g}, seed {args.seed}"
        )
        yield grid_image(pipe.to_images(x)), strip_image(strip, len(strip_steps)), message

    def run_interpolate(digit_a, digit_b, points):
        try:
            found = find_vae_run(vae_run, runs)
            if found is None:
                raise UserError("No VAE run yet: train one with `uv run diffusion train-vae`.")
            digit_a, digit_b = (whole_number(d, "Digits", 0, len(classes) - 1) for d in (digit_a, digit_b))
            points = whole_number(points, "The number of points", 2, 32)
            strip = interpolation_strip(found, digit_a, digit_b, points)
            message = f"VAE latent path from a real {digit_a} to a real {digit_b}"
            return make_grid(strip, columns=len(strip), scale=6), message
        except UserError as err:
            return None, f"⚠️ {err}"

    with gr.Blocks(title="diffusion") as demo:
        source = markdown_text(str(card.get("source", "unknown"))[:100])  # names from card.json: text, not markup
        gr.Markdown(f"# Class-conditional diffusion\n**Data** {source} · **Model** {model_summary(run_dir)}")
        with gr.Tab("Diffusion"):
            with gr.Row():
                with gr.Column():
                    names = [name[:100] for name in classes]  # shown as text; the API takes them too
                    first = names[min(3, len(names) - 1)]
                    class_index = gr.Dropdown(names, value=first, type="index", label="Class")
                    scheduler = gr.Radio(list(SAMPLERS), value="ddim", label="Sampler", info=SAMPLER_HELP)
                    steps = gr.Number(value=50, precision=0, label="Steps (1-1000; DDPM wants ~1000)")
                    guidance = gr.Slider(0, 10, value=2.0, step=0.5, label="Guidance scale (1 = none)")
                    seed = gr.Number(value=0, precision=0, label="Seed")
                    button = gr.Button("Generate", variant="primary")
                with gr.Column():
                    message = gr.Markdown()
                    # PNG, not Gradio's default WebP: lossless, so the page shows the very pixels sampled
                    grid = gr.Image(
                        label="Samples (while denoising: the x_0 estimates)", format="png", interactive=False
                    )
                    strip = gr.Image(
                        label="Denoising trajectory of the first sample (x_0 estimates)",
                        format="png",
                        interactive=False,
                    )
            inputs = [class_index, scheduler, steps, guidance, seed]
            button.click(run_generate, inputs, [grid, strip, message], api_name="generate")
        with gr.Tab("VAE interpolation"):
            with gr.Row():
                digit_a = gr.Number(value=1, precision=0, label="From digit")
                digit_b = gr.Number(value=7, precision=0, label="To digit")
                points = gr.Number(value=10, precision=0, label="Points (2-32)")
            vae_button = gr.Button("Interpolate", variant="primary")
            vae_message = gr.Markdown()
            vae_strip = gr.Image(label="Decoded latent path", interactive=False)
            vae_button.click(
                run_interpolate, [digit_a, digit_b, points], [vae_strip, vae_message], api_name="interpolate"
            )
    return demo
