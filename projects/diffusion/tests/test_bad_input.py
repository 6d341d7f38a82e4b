"""Bad input from a user, in one line each and creating nothing: every flag's bad values on every verb, flags that
contradict each other, and runs whose files are damaged or belong to another model."""

from __future__ import annotations

import dataclasses
import json
import shutil
import typing
from pathlib import Path

import pytest
from safetensors.torch import save_file

from diffusion.baselines_config import GANConfig, VAEConfig
from diffusion.cli import main
from diffusion.config import BenchArgs, DemoArgs, EvalArgs, ExportArgs, SampleArgs, TrainConfig
from dlshared.cli import field_checks
from dlshared.testing import assert_one_line_error, bad_flag_cases

VERBS = {
    "train": TrainConfig,
    "train-vae": VAEConfig,
    "train-gan": GANConfig,
    "eval": EvalArgs,
    "sample": SampleArgs,
    "export": ExportArgs,
    "bench": BenchArgs,
    "demo": DemoArgs,
}
TRAINS = ("train", "train-vae", "train-gan")
RENAMED = {"--digit": "--class"}  # fields whose flag has another name (`class` is a Python keyword)
CASES = [
    (verb, RENAMED.get(flag, flag), value) for verb, config in VERBS.items() for flag, value in bad_flag_cases(config)
]


@pytest.mark.parametrize("verb, flag, value", CASES, ids=[f"{v}{f}={x}" for v, f, x in CASES])
def test_every_bad_flag_value_is_one_line_and_creates_nothing(verb, flag, value, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may appear here, ./runs and ./samples included
    argv = [verb, flag, value, *(["--preset", "tiny"] if verb in TRAINS else [])]
    assert flag in assert_one_line_error(main, argv, capsys)
    assert list(tmp_path.iterdir()) == []


def is_numeric(hint) -> bool:
    """int, float, `int | None`, `tuple[int, ...]` (bool is not a number here)."""
    inner = [a for a in typing.get_args(hint) if a not in (type(None), Ellipsis)]
    return hint in (int, float) or (bool(inner) and all(a in (int, float) for a in inner))


def test_every_numeric_field_has_a_declared_check():
    """A numeric field without a declared range would slip past the table above (only a word would be fed to it).
    --class alone is checked in code: its range is the model's classes."""
    unchecked = [
        f"{config.__name__}.{field.name}"
        for config in VERBS.values()
        for field in dataclasses.fields(config)
        if is_numeric(typing.get_type_hints(config)[field.name]) and field.name not in field_checks(config)
    ]
    assert unchecked == ["SampleArgs.digit"]


RELATIONS = [
    ("train", ["--attention-levels", "False"], "one entry per --block-out-channels entry"),
    ("train", ["--block-out-channels", "12", "16"], "multiples of 8"),
    ("train", ["--image-size", "12", "--block-out-channels", *"8888", "--attention-levels", *["False"] * 4], "by 8"),
    ("train", ["--image-size", "10"], "multiple of 4"),
    ("train", ["--channels", "2"], "1 or 3"),
    ("train", ["--channels", "3"], "the digits are grayscale"),
    ("train", ["--eval-steps", "2000"], "at most --num-train-timesteps"),
    ("train", ["--name", "../elsewhere"], "letters, digits"),
    ("train", ["--latent", "--autoencoder-channels", "12", "16"], "--autoencoder-channels must be multiples of 8"),
    ("train", ["--autoencoder", "runs/diffusion/x"], "add --latent"),
    ("train", ["--latent", "--image-size", "12", "--autoencoder-channels", *"8888"], "12 must be divisible by 8"),
    ("train", ["--latent", "--block-out-channels", *"8888", "--attention-levels", *["False"] * 4], "the latent side 4"),
    ("train-vae", ["--batch-size", "5000"], "exceeds the 1437 training images"),
    ("train-gan", ["--image-size", "6"], "multiple of 4"),
]


@pytest.mark.parametrize("verb, argv, message", RELATIONS, ids=[" ".join(a) for _, a, _ in RELATIONS])
def test_contradicting_flags_are_refused_before_any_folder_exists(verb, argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert message in assert_one_line_error(main, [verb, "--preset", "tiny", *argv], capsys)
    assert list(tmp_path.iterdir()) == []


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def another_models_weights(path: Path) -> None:
    from diffusion.model import build_unet

    other = build_unet(16, 1, 10, (16, 16), (False, True))  # the same family, another width
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))


def vae_weights(path: Path) -> None:
    from diffusion.autoencoder import CVAE

    save_file(CVAE(1, 16, 10, 8, 8).state_dict(), str(path))


def edit_json(value):
    return lambda path: path.write_text(value if isinstance(value, str) else json.dumps(value), encoding="utf-8")


WEIGHTS = "pipeline/unet/diffusion_pytorch_model.safetensors"
DAMAGES = {
    "truncated weights": (WEIGHTS, truncate),
    "another model's weights": (WEIGHTS, another_models_weights),
    "VAE weights as the U-Net's": (WEIGHTS, vae_weights),
    "no weights": (WEIGHTS, Path.unlink),
    "model_index.json not JSON": ("pipeline/model_index.json", edit_json("{not json")),
    "model_index.json of another pipeline": ("pipeline/model_index.json", edit_json({"_class_name": "DDPMPipeline"})),
    "unet config not JSON": ("pipeline/unet/config.json", edit_json("")),
    "card.json not JSON": ("card.json", edit_json("\x00\x01")),
    "card.json without classes": ("card.json", edit_json({"model": "diffusion"})),
    "card.json of another run": ("card.json", edit_json({"model": "diffusion", "classes": ["cat", "dog"]})),
}
DAMAGE_CASES = [(verb, damage) for verb in ("eval", "sample", "export", "demo") for damage in DAMAGES]


@pytest.mark.parametrize("verb, damage", DAMAGE_CASES, ids=[f"{v}-{d}" for v, d in DAMAGE_CASES])
def test_a_damaged_or_foreign_file_is_named_in_one_line(
    tiny_run, runs_root, tmp_path, capsys, monkeypatch, verb, damage
):
    monkeypatch.setattr("dlshared.demo.launch", lambda *a, **k: pytest.fail("the demo served a damaged run"))
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run["run_dir"], run_dir)
    name, spoil = DAMAGES[damage]
    spoil(run_dir / name)
    extra = {"sample": ["--out", str(tmp_path / "out")], "export": ["--out", str(tmp_path / "out")]}
    extra |= {"eval": ["--runs", str(runs_root)], "demo": []}
    err = assert_one_line_error(main, [verb, "--ckpt", str(run_dir), *extra[verb]], capsys)
    assert str(run_dir / name) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no output folder, no staging folder


def test_resume_refuses_a_flag_that_changes_what_the_run_trains(tiny_run, tmp_path, capsys):
    """--resume continues the run under its own config.json: a typed flag that would train another U-Net is one
    line, and the run is left as it was."""
    run_dir = Path(shutil.copytree(tiny_run["run_dir"], tmp_path / "diffusion" / "copy"))
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    argv = ["train", "--preset", "tiny", "--out", str(tmp_path), "--name", "copy", "--resume"]
    err = assert_one_line_error(main, [*argv, "--block-out-channels", "16", "32"], capsys)
    assert "--block-out-channels (16, 32): " in err and "was trained with (8, 16)" in err
    assert "--resume continues a run as it was configured" in err
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def foreign_resume_state(path: Path) -> None:
    from diffusion.model import build_unet
    from dlshared.checkpoint import load_resume_state, save_resume_state

    other = build_unet(16, 1, 10, (16, 16), (False, True)).state_dict()  # another width of the same U-Net
    save_resume_state({**load_resume_state(path), "model": other}, path)


@pytest.mark.parametrize(
    "spoil, message",
    [(truncate, "resume.pt cannot be read"), (foreign_resume_state, "resume.pt does not fit this model")],
    ids=["truncated", "another model's"],
)
def test_resume_from_a_damaged_or_foreign_resume_file_is_one_line(tiny_run, tmp_path, capsys, spoil, message):
    run_dir = tmp_path / "diffusion" / "damaged"
    shutil.copytree(tiny_run["run_dir"], run_dir)
    spoil(run_dir / "resume.pt")
    argv = ["train", "--preset", "tiny", "--out", str(tmp_path), "--name", "damaged", "--resume"]
    assert message in assert_one_line_error(main, argv, capsys)
    assert (run_dir / "pipeline" / "model_index.json").is_file()  # the run is still there to retrain or inspect
