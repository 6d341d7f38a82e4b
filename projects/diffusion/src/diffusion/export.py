"""The `export` verb: the EMA pipeline of a run, copied out as a diffusers folder with its card.json, and a README.md
that is a Hub model card (dlshared.modelcard) with the run's own end-of-training scores; `--push-to-hub` uploads it.

pipe = ClassConditionalPipeline.from_pretrained("export")      # or UNet2DModel.from_pretrained(..., "unet")
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dlshared.checkpoint import read_json_object
from dlshared.configs import WHERE_FIELDS
from dlshared.hub import push_folder
from dlshared.hubdata import parse_hub_id
from dlshared.modelcard import Result, train_command, write_model_card
from dlshared.outputs import staged_output

from .artifacts import find_run, load_card, load_model, pipeline_folder
from .config import PRESETS, ExportArgs


def export(args: ExportArgs) -> dict:
    run = find_run(args.ckpt, args.runs)
    source = pipeline_folder(run)
    out = (args.out or run / "export").resolve()
    load_model(run)  # a damaged or foreign file is refused here, not copied into an export that cannot load
    # staged, then renamed: a user's folder is refused (never deleted), an earlier export replaced only when asked
    with staged_output(out, args.overwrite, sources=(run,)) as stage:
        shutil.copytree(source, stage, dirs_exist_ok=True)
        card = load_card(run)
        (stage / "card.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
        write_card(stage, run, card)  # after the copy: replaces any README.md a diffusers save_pretrained left
        files = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file())
    result = {"out": str(out), "format": "diffusers", "files": files}
    if args.push_to_hub:  # only a complete folder: staged_output has renamed it into place
        result["pushed"] = push_folder(out, args.push_to_hub)
    return result


DATASETS = {"digits": ("sklearn-digits", "scikit-learn digits"), "cifar10": ("uoft-cs/cifar10", "CIFAR-10")}
"""Resolved --dataset -> (dataset id: the Hub's where it has one, the name a reader knows)."""
TASK = "unconditional-image-generation"
"""The Hub has no class-conditional image task; this one fits, as the same network samples without a class too
(classifier-free guidance trains it on "no class" labels)."""


def write_card(stage: Path, run: Path, card: dict) -> Path:
    """README.md in the Hub's format, from the run's config.json, card.json and metrics.json. A bare pipeline folder
    (no run around it) has neither config.json nor metrics.json: its card says so."""
    run_dir = run if (run / "config.json").is_file() else run.parent  # --ckpt may name RUN/pipeline
    config = read_json_object(run_dir / "config.json") if (run_dir / "config.json").is_file() else {}
    metrics = read_json_object(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else {}
    data_id, data_name = _dataset(config, card)
    return write_model_card(
        stage,
        title=f"diffusion: class-conditional {'latent ' if config.get('latent') else ''}diffusion on {data_name}",
        library_name="diffusers",
        pipeline_tag=TASK,
        tags=["pytorch-capstones", "diffusers", "class-conditional", "classifier-free-guidance"]
        + (["latent-diffusion"] if config.get("latent") else []),
        datasets=[data_id],
        license="mit",
        results=_results(metrics.get("eval") or {}, data_id, data_name),
        summary=_summary(card, config),
        data=(
            f"Trained on the training split of {card.get('source', data_name)}, classes {', '.join(card['classes'])}."
            " The held-out split is the reference of FID and KID and the test set of the judge; it was never"
            " trained on."
        ),
        command=train_command(
            "diffusion",
            config,
            PRESETS,
            "quick",
            ignore=(*WHERE_FIELDS, "progress", "checkpoint_every", "log_every", "device"),  # no effect on weights
            processes=metrics.get("processes", 1),
        )
        if config
        else f"# not recorded: {run} holds no run config.json (a pipeline folder without its run)",
        limits=(
            "FID and KID are measured on the features of a small classifier (the judge) the project trains on the"
            " same data, not on Inception's, so they compare only with other runs scored by the same judge, never"
            " with published FIDs; they come from one sampler setting and sample count (named with each score)."
            " The model draws images like its training images and nothing else. The weights inherit the terms of"
            " use of the data they were trained on."
        ),
        settings_file=None,  # the config.json files here are diffusers'; the command above is the run's settings
    )


def _dataset(config: dict, card: dict) -> tuple[str, str]:
    """(dataset id, the name a reader knows) of the run's --data / --dataset, as config.data_source resolves them."""
    if not config:  # a bare pipeline folder: only its card.json (if any) says what it learnt
        return "unknown", card.get("source", "unknown data")
    folder, dataset = config.get("data"), config.get("dataset", "auto")
    if hub := parse_hub_id(folder):  # --data owner/name: the Hub's own id
        return hub.repo, f"{hub.repo} (Hugging Face Hub, split {hub.split})"
    dataset = dataset if dataset != "auto" else ("imagefolder" if folder else "digits")
    return DATASETS.get(dataset) or (Path(str(folder)).name, f"ImageFolder {folder}")


def _results(scores: dict, data_id: str, data_name: str) -> list[Result]:
    """FID, KID and the judge's accuracy of the end-of-training evaluation (evaluate.py defines each)."""
    how = (
        f"{scores.get('samples')} samples, {scores.get('scheduler')} {scores.get('steps')} steps,"
        f" guidance {scores.get('guidance')}"
    )
    names = {
        "fid": f"FID on the judge's features ({how})",
        "kid": f"KID on the judge's features ({how})",
        "accuracy": f"share judged the class asked for ({how})",
    }
    return [
        Result(TASK, data_id, data_name, metric, scores[metric], name)
        for metric, name in names.items()
        if isinstance(scores.get(metric), int | float)
    ]


def _summary(card: dict, config: dict) -> str:
    size, colour = card.get("image_size"), {1: "grayscale", 3: "RGB"}.get(card.get("channels"), "")
    parameters = f" ({card['parameters']:,} parameters)" if card.get("parameters") else ""
    latent = (
        f", on the {card['latent_shape']} latents of an AutoencoderKL (vae/) trained in the same run"
        if config.get("latent") and card.get("latent_shape")
        else ""
    )
    return (
        f"A class-conditional diffusion model: a diffusers UNet2DModel{parameters}{latent}, trained by the"
        f" `diffusion` project of PyTorch Capstones (EMA weights), drawing {size}x{size} {colour} images of"
        f" {len(card['classes'])} classes, with classifier-free guidance. The project's"
        " `diffusion.pipeline.ClassConditionalPipeline.from_pretrained(FOLDER)` samples it (card.json names the"
        ' classes); `UNet2DModel.from_pretrained(FOLDER, subfolder="unet")` loads the network with diffusers alone.'
    )
