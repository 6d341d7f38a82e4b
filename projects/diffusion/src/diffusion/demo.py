"""The Gradio demo: pick a digit, a sampler, steps, guidance and a seed -> a grid of samples and a strip of the
denoising trajectory (the x_0 estimate as the noise is removed); a second tab walks the VAE's latent space
between two real digits.

`build_demo(run_dir)` only builds the app; `diffusion demo` serves it (dlshared.demo.serve, 127.0.0.1).
Every input is bounded (a class of the model, 1-1000 steps, guidance 0-50, a seed below 2^32, 2-32 points), and
a value out of range, empty, fractional or not finite becomes a message in the page, never a traceback. Names
from the run's card.json are shown as text, never as markup.
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
from .sample import check_sampling_args, generate, make_grid

GRID_SAMPLES, STRIP_POINTS = 16, 8
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

    def run_generate(digit, scheduler, steps, guidance, seed):
        try:
            guidance = finite_number(guidance, "The guidance scale")
            if scheduler not in SAMPLERS:
                raise UserError(f"Choose a sampler among {', '.join(SAMPLERS)}.")
            digit = whole_number(digit, "The class", 0, len(classes) - 1)
            steps = whole_number(steps, "The number of steps", 1, 1000)  # the cost of a call is capped too
            seed = whole_number(seed, "The seed", 0, MAX_SEED)
            args = SamplingArgs(scheduler=scheduler, steps=steps, guidance=guidance, seed=seed)
            check_sampling_args(args, len(classes), digit, GRID_SAMPLES)
            labels = torch.full((GRID_SAMPLES,), digit)
            out = generate(args, labels, pipe, trajectory_points=min(STRIP_POINTS, args.steps))
            strip = torch.stack([point[0] for point in out.trajectory])  # the first sample, step by step
            message = (
                f"{GRID_SAMPLES} samples of class **{markdown_text(classes[digit][:100])}**, sampler {scheduler}, "
                f"{args.steps} steps, guidance {args.guidance:g}, seed {args.seed}"
            )
            return make_grid(out.images, columns=4), make_grid(strip, columns=len(strip), scale=6), message
        except UserError as err:
            return None, None, f"⚠️ {str(err).replace('--class', 'the class').replace('--', '')}"

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
                    digit = gr.Number(value=3, precision=0, label=f"Class (0-{len(classes) - 1})")
                    scheduler = gr.Radio(list(SAMPLERS), value="ddim", label="Sampler", info=SAMPLER_HELP)
                    steps = gr.Number(value=50, precision=0, label="Steps (1-1000; DDPM wants ~1000)")
                    guidance = gr.Slider(0, 10, value=2.0, step=0.5, label="Guidance scale (1 = none)")
                    seed = gr.Number(value=0, precision=0, label="Seed")
                    button = gr.Button("Generate", variant="primary")
                with gr.Column():
                    message = gr.Markdown()
                    grid = gr.Image(label="Samples", interactive=False)
                    strip = gr.Image(
                        label="Denoising trajectory of the first sample (x_0 estimates)", interactive=False
                    )
            button.click(
                run_generate, [digit, scheduler, steps, guidance, seed], [grid, strip, message], api_name="generate"
            )
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
