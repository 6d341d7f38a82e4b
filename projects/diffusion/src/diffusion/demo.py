"""The Gradio demo: pick a digit, a sampler, steps, guidance and a seed -> a grid of samples and a strip of the
denoising trajectory (the x_0 estimate as the noise is removed); a second tab walks the VAE's latent space
between two real digits.

`build_demo(run_dir)` only builds the app; `diffusion demo` serves it (dlshared.demo.serve, 127.0.0.1).
Bad values (a class out of range, 0 steps, a guidance scale out of range) become a message, not a traceback.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import torch

from dlshared.checkpoint import load_json
from dlshared.cli import UserError

from .artifacts import load_card, load_pipeline
from .baselines import interpolation_strip
from .config import PROJECT, SAMPLERS, SamplingArgs
from .sample import check_sampling_args, generate, make_grid

GRID_SAMPLES, STRIP_POINTS = 16, 8
SAMPLER_HELP = "ddim, ddpm: the hand-written steps of schedule.py; diffusers-*: the library's; dpm: DPM-Solver++"


def is_finished_vae_run(folder: Path) -> bool:
    card = folder / "card.json"
    return (folder / "metrics.json").is_file() and card.is_file() and load_json(card).get("model") == "vae"


def find_vae_run(vae_run: Path | None, runs: Path) -> Path | None:
    """--vae as given, else the newest finished VAE run under runs/diffusion/, else None."""
    if vae_run is not None:
        return vae_run
    base = Path(runs) / PROJECT
    candidates = [d for d in base.iterdir() if is_finished_vae_run(d)] if base.is_dir() else []
    return max(candidates, key=lambda d: (d / "metrics.json").stat().st_mtime, default=None)


def model_summary(run_dir: Path) -> str:
    """The end-of-training evaluation of the run, in one line."""
    metrics = load_json(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else {}
    scores = metrics.get("eval")
    if not scores:
        return "not evaluated"
    setting = f"{scores['scheduler']}-{scores['steps']}, guidance {scores['guidance']:g}"
    return f"judged accuracy {scores['accuracy']:.1%}, FID {scores['fid']:.2f} ({setting})"


def build_demo(run_dir: Path, vae_run: Path | None = None, runs: Path = Path("runs")) -> gr.Blocks:
    card = load_card(run_dir)
    classes = card["classes"]
    pipe = load_pipeline(run_dir)  # one pipeline; each call picks its sampler

    def run_generate(digit, scheduler, steps, guidance, seed):
        try:
            if digit is None or steps is None or guidance is None or seed is None:
                raise UserError("Fill in every field.")
            if scheduler not in SAMPLERS:
                raise UserError(f"Choose a sampler among {', '.join(SAMPLERS)}.")
            if float(digit) != int(digit) or float(steps) != int(steps):
                raise UserError("The class and the number of steps are whole numbers.")
            args = SamplingArgs(scheduler=scheduler, steps=int(steps), guidance=float(guidance), seed=int(seed))
            check_sampling_args(args, len(classes), int(digit), GRID_SAMPLES)
            labels = torch.full((GRID_SAMPLES,), int(digit))
            out = generate(args, labels, pipe, trajectory_points=min(STRIP_POINTS, args.steps))
            strip = torch.stack([point[0] for point in out.trajectory])  # the first sample, step by step
            message = (
                f"{GRID_SAMPLES} samples of class **{classes[int(digit)]}**, sampler {scheduler}, "
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
            for value in (digit_a, digit_b):
                if value is None or not 0 <= int(value) < len(classes):
                    raise UserError(f"Digits must be between 0 and {len(classes) - 1}.")
            if points is None or not 2 <= int(points) <= 32:
                raise UserError("Choose between 2 and 32 points.")
            strip = interpolation_strip(found, int(digit_a), int(digit_b), int(points))
            message = f"VAE latent path from a real {int(digit_a)} to a real {int(digit_b)}"
            return make_grid(strip, columns=len(strip), scale=6), message
        except UserError as err:
            return None, f"⚠️ {err}"

    with gr.Blocks(title="diffusion") as demo:
        gr.Markdown(f"# Class-conditional diffusion\n**Data** {card['source']} · **Model** {model_summary(run_dir)}")
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
