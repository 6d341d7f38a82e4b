"""Reading what training wrote: a run folder holds `pipeline/` (a diffusers pipeline with the EMA weights, and
for a latent run its autoencoder), `card.json` (classes, data), `config.json`, `metrics.json` and `resume.pt`."""

from __future__ import annotations

import filecmp
import os
import secrets
import shutil
from pathlib import Path

import torch

from dlshared.checkpoint import fsync_path, load_weights, read_json_object
from dlshared.cli import UserError, short_reason
from dlshared.runs import latest_run

from .config import PIPELINE_DIR, PIPELINE_INDEX, PROJECT
from .latent import VAE_DIR, load_autoencoder
from .pipeline import ClassConditionalPipeline

RETRAIN = "train the run again (or point --ckpt at another run)"


def find_run(ckpt: Path | None, runs: Path = Path("runs")) -> Path:
    """--ckpt as given, or the newest diffusion run (one with a pipeline) under `runs`."""
    if ckpt is not None:
        return Path(ckpt)
    newest = latest_run(PROJECT, runs, required=PIPELINE_INDEX)
    if newest is None:
        raise UserError(f"no trained diffusion model under {runs / PROJECT}; run `diffusion train` or pass --ckpt")
    return newest


def pipeline_folder(path: Path) -> Path:
    """A run folder or the pipeline folder inside it -> the pipeline folder."""
    for candidate in (path / PIPELINE_DIR, path):
        if (candidate / "model_index.json").is_file():
            return candidate
    raise UserError(f"{path}: not a diffusion run or pipeline folder (no model_index.json)")


def load_pipeline(path: Path, device: str | torch.device = "cpu") -> ClassConditionalPipeline:
    """A saved pipeline (safetensors only); each call of it picks its sampler. Its files are checked first, so a
    damaged or foreign one ends as one line naming it, not as a diffusers traceback or, worse, as a U-Net silently
    left at random weights where the file held another model's: the U-Net its config describes is built without
    initialising it and filled by dlshared's load_weights (every tensor, by name and shape), then handed to the
    pipeline. A latent run's autoencoder (vae/) is loaded the same way (latent.load_autoencoder)."""
    from diffusers import UNet2DModel
    from diffusers.utils import SAFETENSORS_WEIGHTS_NAME
    from diffusers.utils import logging as diffusers_logging

    folder = pipeline_folder(Path(path))
    index = read_json_object(folder / "model_index.json")
    if index.get("_class_name") != ClassConditionalPipeline.__name__:
        raise UserError(
            f"{folder / 'model_index.json'}: a {index.get('_class_name')!r} pipeline, not a diffusion run's"
        )
    read_json_object(folder / "scheduler" / "scheduler_config.json")
    unet_config = read_json_object(folder / "unet" / "config.json")
    if not isinstance(unet_config.get("num_class_embeds"), int) or unet_config["num_class_embeds"] < 2:
        raise UserError(f"{folder / 'unet' / 'config.json'}: not a class-conditional U-Net (num_class_embeds)")
    try:
        with torch.device("meta"):  # the architecture the config describes: no memory, no random draws
            unet = UNet2DModel.from_config(unet_config)
    except Exception as err:
        raise UserError(
            f"{folder / 'unet' / 'config.json'}: not a U-Net config ({short_reason(err)}); {RETRAIN}"
        ) from None
    unet = load_weights(unet.to_empty(device="cpu"), folder / "unet" / SAFETENSORS_WEIGHTS_NAME).eval()
    vae_entry = index.get("vae")  # ["diffusers", "AutoencoderKL"] in a latent run; [null, null] or absent if not
    vae = load_autoencoder(folder / VAE_DIR) if isinstance(vae_entry, list) and any(vae_entry) else None
    diffusers_logging.disable_progress_bar()  # "Loading pipeline components" on every sample/eval call is noise
    try:
        pipe = ClassConditionalPipeline.from_pretrained(folder, unet=unet, vae=vae, use_safetensors=True)
    except Exception as err:  # what the checks above cannot foresee, still as one line
        raise UserError(f"{folder}: cannot load the pipeline ({short_reason(err)}); {RETRAIN}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def find_card(path: Path) -> Path | None:
    """RUN/card.json for a run folder or the pipeline folder inside it (None for a bare pipeline folder)."""
    return next((c for c in (Path(path) / "card.json", Path(path).parent / "card.json") if c.is_file()), None)


def load_card(path: Path) -> dict:
    """classes and data description; a bare pipeline folder (no card) gets digit names 0..K-1."""
    card_file = find_card(path)
    if card_file is None:
        unet_config = read_json_object(pipeline_folder(Path(path)) / "unet" / "config.json")
        return {"classes": [str(i) for i in range(unet_config["num_class_embeds"] - 1)], "source": "unknown"}
    card = read_json_object(card_file)
    classes = card.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str | int) for c in classes):
        raise UserError(f'{card_file}: no list of class names under "classes"; {RETRAIN}')
    return {**card, "classes": [str(c) for c in classes]}


def load_model(path: Path, device: str | torch.device = "cpu") -> tuple[ClassConditionalPipeline, list[str]]:
    """The pipeline of a run (or pipeline folder) and its class names, checked to belong together."""
    pipe, classes = load_pipeline(path, device), load_card(path)["classes"]
    if len(classes) != pipe.num_classes:
        raise UserError(
            f"{find_card(path)}: {len(classes)} class names for a model of {pipe.num_classes} classes "
            f"(the card of another run?); {RETRAIN}"
        )
    return pipe, classes


def run_kind(run: Path) -> str:
    """Which model a run folder of this project holds: "diffusion", "vae" or "gan" (card.json says)."""
    if not (Path(run) / "config.json").is_file():
        raise UserError(f"{run}: not a run folder of this project (no config.json)")
    return load_card(run).get("model", "diffusion")


def save_pipeline_atomically(pipe: ClassConditionalPipeline, folder: Path) -> None:
    """Publish `pipe` as `folder` (RUN/pipeline) so that the folder is never missing and always loads, whenever
    the process is killed (kill -9, a power cut) and whoever reads it meanwhile (export, sample, the demo).

    save_pretrained writes into a hidden staging folder beside it. The first save renames that folder into place:
    one atomic step. A later save of the same run differs from the folder in place only in its weights (the
    configs are the run's, the same at every checkpoint), and each changed file is renamed over its old version,
    again one atomic step: the folder holds the old weights or the new ones, each file whole. (Renaming the folder
    aside and the new one in, as dlshared.outputs does, would leave a moment with no RUN/pipeline at all, and a
    run killed then could not even be resumed.) A staging folder a killed save leaves is removed by the next
    save and when the run resumes (remove_stale_pipelines).
    """
    folder = Path(folder)
    remove_stale_pipelines(folder)
    stage = folder.with_name(f".{folder.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")
    stage.mkdir()  # not mkdtemp: its owner-only permissions would become the published folder's
    try:
        pipe.save_pretrained(stage, safe_serialization=True)
        files = sorted(p.relative_to(stage) for p in stage.rglob("*") if p.is_file())  # unet/config before weights
        for name in files:
            fsync_path(stage / name)  # the contents reach the disk before any rename can
        if not folder.exists():
            os.replace(stage, folder)  # the first save: the whole folder appears in one step
        else:
            for name in files:
                if not (folder / name).is_file() or not filecmp.cmp(stage / name, folder / name, shallow=False):
                    (folder / name).parent.mkdir(exist_ok=True)
                    os.replace(stage / name, folder / name)
        for renamed_in in {folder.parent, folder, *(folder / name.parent for name in files)}:
            fsync_path(renamed_in)  # and so do the renames
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def remove_stale_pipelines(folder: Path) -> list[Path]:
    """Delete what a killed save_pipeline_atomically left beside `folder`: its hidden staging folders, and the
    pipeline.tmp / pipeline.old of earlier versions. Only while holding the run's lock (no other save runs)."""
    folder = Path(folder)
    stale = list(folder.parent.glob(f".{folder.name}.*.partial"))
    if (folder / "model_index.json").is_file():  # the old layout's .old copy is spare only beside a pipeline
        stale += [folder.with_name(f"{folder.name}.tmp"), folder.with_name(f"{folder.name}.old")]
    stale = [p for p in stale if p.is_dir()]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale
