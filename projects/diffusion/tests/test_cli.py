"""The `diffusion` verbs as a user types them: sample files, eval JSON, export, bench, and one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from diffusion.cli import main
from diffusion.pipeline import ClassConditionalPipeline
from dlshared.outputs import MARKER
from dlshared.testing import assert_one_line_error


def run(argv: list[str], capsys) -> dict:
    main(argv)
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def written(out: Path) -> list[str]:
    """The files a verb wrote into `out`, without the marker that says it wrote them."""
    assert (out / MARKER).is_file()
    return sorted(p.name for p in out.iterdir() if p.name != MARKER)


def test_sample_writes_one_png_per_sample_and_a_grid(tiny_run, tmp_path, capsys):
    out = tmp_path / "samples"
    args = ["--n", "5", "--class", "7", "--steps", "3", "--scheduler", "dpm", "--guidance", "3", "--seed", "1"]
    result = run(["sample", "--ckpt", tiny_run["run_dir"], *args, "--out", str(out)], capsys)
    assert result["files"] == 5
    expected = ["7_0.png", "7_1.png", "7_2.png", "7_3.png", "7_4.png", "grid.png"]
    assert written(out) == expected
    assert Image.open(out / "7_0.png").size == (16, 16)
    assert Image.open(out / "grid.png").size[0] > 16


def test_sample_without_a_class_goes_through_the_classes(tiny_run, tmp_path, capsys):
    out = tmp_path / "all"
    run(["sample", "--ckpt", tiny_run["run_dir"], "--n", "12", "--steps", "2", "--out", str(out)], capsys)
    names = set(written(out))
    assert {"0_0.png", "9_9.png", "0_10.png", "1_11.png", "grid.png"} <= names and len(names) == 13


@pytest.mark.parametrize("sampler", ["ddim", "diffusers-ddpm"])
def test_same_seed_same_files(tiny_run, tmp_path, capsys, sampler):
    for name in ("a", "b"):
        args = ["--n", "2", "--class", "3", "--steps", "3", "--scheduler", sampler, "--out", str(tmp_path / name)]
        run(["sample", "--ckpt", tiny_run["run_dir"], *args], capsys)
    assert (tmp_path / "a/3_1.png").read_bytes() == (tmp_path / "b/3_1.png").read_bytes()


def test_eval_prints_judged_metrics(tiny_run, runs_root, capsys):
    args = ["--n", "20", "--steps", "3", "--scheduler", "ddim", "--runs", str(runs_root)]
    metrics = run(["eval", "--ckpt", tiny_run["run_dir"], *args], capsys)
    assert metrics["model"] == "diffusion" and metrics["samples"] == 20 and metrics["scheduler"] == "ddim"
    assert {"accuracy", "fid", "kid", "samples_per_s"} <= set(metrics)


def test_eval_of_the_preset_sampler_reproduces_the_training_evaluation(tiny_run, runs_root, capsys):
    """`eval` with the settings of the end-of-training evaluation gives the metrics train saved."""
    saved = tiny_run["eval"]
    args = ["--n", str(saved["samples"]), "--steps", str(saved["steps"]), "--scheduler", saved["scheduler"]]
    metrics = run(["eval", "--ckpt", tiny_run["run_dir"], *args, "--runs", str(runs_root)], capsys)
    for key in ("accuracy", "confidence", "fid", "kid"):
        assert metrics[key] == saved[key], key


def test_a_vae_run_is_evaluated_by_the_same_verb(runs_root, capsys):
    args = ["--out", str(runs_root), "--name", "vae-cli", "--eval-samples", "0"]
    run(["train-vae", "--preset", "tiny", *args], capsys)
    metrics = run(
        ["eval", "--ckpt", str(runs_root / "diffusion/vae-cli"), "--n", "20", "--runs", str(runs_root)], capsys
    )
    assert metrics["model"] == "vae" and metrics["samples"] == 20 and 0 <= metrics["accuracy"] <= 1
    samples_png = runs_root / "diffusion/vae-cli/samples.png"  # a row per class of what was judged, as for diffusion
    assert metrics["pictures"] == {"samples": str(samples_png)} and Image.open(samples_png).format == "PNG"


def test_export_writes_a_diffusers_folder_that_loads(tiny_run, tmp_path, capsys):
    result = run(["export", "--ckpt", tiny_run["run_dir"], "--out", str(tmp_path / "export")], capsys)
    assert "unet/diffusion_pytorch_model.safetensors" in result["files"] and "card.json" in result["files"]
    pipe = ClassConditionalPipeline.from_pretrained(tmp_path / "export")
    assert pipe.num_classes == 10
    assert "README.md" in result["files"]
    assert_model_card(tmp_path / "export" / "README.md", Path(tiny_run["run_dir"]))


def assert_model_card(path: Path, run_dir: Path) -> None:
    """The export's README.md is a Hub model card carrying the run's own FID, KID and judged accuracy."""
    from huggingface_hub import ModelCard

    card = ModelCard.load(path)
    saved = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))["eval"]
    assert card.data.library_name == "diffusers" and card.data.pipeline_tag == "unconditional-image-generation"
    assert "class-conditional" in card.data.tags and card.data.datasets == ["sklearn-digits"]
    scores = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert scores == {"fid": saved["fid"], "kid": saved["kid"], "accuracy": saved["accuracy"]}
    assert {r.dataset_split for r in card.data.eval_results} == {"test"}
    assert "```bash\nuv run diffusion train --preset tiny\n```" in card.text
    for section in ("## Data", "## Training", "## Results", "## Limits"):
        assert section in card.text


def test_export_never_deletes_what_it_did_not_write(tiny_run, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work", encoding="utf-8")
    run_dir = tiny_run["run_dir"]
    cases = [
        (mine, [], "is not empty"),
        (mine, ["--overwrite"], "not written by this tool"),
        (run_dir, [], "being read"),
    ]
    for out, extra, message in cases:
        assert message in assert_one_line_error(main, ["export", "--ckpt", run_dir, "--out", str(out), *extra], capsys)
    assert (mine / "thesis.tex").read_text(encoding="utf-8") == "years of work"
    assert (Path(run_dir) / "pipeline" / "model_index.json").is_file()  # the run is intact
    out = tmp_path / "export-twice"
    run(["export", "--ckpt", run_dir, "--out", str(out)], capsys)
    run(["export", "--ckpt", run_dir, "--out", str(out), "--overwrite"], capsys)  # its own export: replaced
    assert (out / "card.json").is_file() and not list(tmp_path.glob(".export-twice.*"))


def test_class_names_from_card_json_never_name_a_path_outside_out(tiny_run, tmp_path, capsys):
    """card.json is an artefact anyone can edit: its class names become file names only through safe_filename."""
    run_dir = tmp_path / "edited-run"
    shutil.copytree(tiny_run["run_dir"], run_dir)
    hostile = ["../escape", "/tmp/abs", ".hidden", "a/../../b", "..", "", "<b>x</b>", "ok", "ok", "C:\\win"]
    card = json.loads((run_dir / "card.json").read_text(encoding="utf-8"))
    (run_dir / "card.json").write_text(json.dumps({**card, "classes": hostile}), encoding="utf-8")
    before = {p for p in tmp_path.parent.rglob("*") if "samples" not in p.parts}
    out = tmp_path / "samples"
    run(["sample", "--ckpt", str(run_dir), "--n", "10", "--steps", "1", "--out", str(out)], capsys)
    after = {p for p in tmp_path.parent.rglob("*") if "samples" not in p.parts}
    assert after == before  # nothing appeared outside --out (nor a leftover staging folder)
    names = written(out)
    assert len(names) == 11 and "grid.png" in names  # ten samples, no two of them in one file
    assert {
        "_escape_0.png",
        "_tmp_abs_1.png",
        "hidden_2.png",
        "a_.._.._b_3.png",
        "class_4.png",
        "ok_7.png",
        "ok_8.png",
    } <= set(names)
    assert all(p.parent == out and not p.name.startswith(".") for p in out.iterdir() if p.name != MARKER)


def test_sample_writes_only_into_a_folder_it_may_replace(tiny_run, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "holiday.png").write_bytes(b"not ours")
    base = ["sample", "--ckpt", tiny_run["run_dir"], "--n", "2", "--steps", "1"]
    for out, extra, message in [
        (mine, [], "is not empty"),
        (mine, ["--overwrite"], "not written by this tool"),
        (tiny_run["run_dir"], [], "being read"),
        (Path(tiny_run["run_dir"]).parent, [], "being read"),
    ]:
        assert message in assert_one_line_error(main, [*base, "--out", str(out), *extra], capsys)
    assert [p.name for p in mine.iterdir()] == ["holiday.png"]
    out = tmp_path / "twice"
    run([*base, "--class", "1", "--out", str(out)], capsys)
    assert "add --overwrite" in assert_one_line_error(main, [*base, "--out", str(out)], capsys)
    run([*base, "--class", "2", "--out", str(out), "--overwrite"], capsys)  # its own samples: replaced whole
    assert written(out) == ["2_0.png", "2_1.png", "grid.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "twice"]  # no staging or old folder left


def test_bench_reports_samples_per_second(tiny_run, capsys):
    args = ["--batch-size", "4", "--configs", "ddim:3", "diffusers-ddim:3", "dpm:2", "--train-steps", "0"]
    result = run(["bench", "--ckpt", tiny_run["run_dir"], *args], capsys)
    assert set(result["sampling"]) == {"ddim:3", "diffusers-ddim:3", "dpm:2"}
    assert all(v["samples_per_s"] > 0 for v in result["sampling"].values())


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--class", "10"], "--class must be between 0 and 9"),
        (["--class", "-1"], "--class must be between 0 and 9"),
        (["--steps", "0"], "--steps 0: must be at least 1"),
        (["--steps", "5000"], "at most 1000"),
        (["--n", "0"], "--n 0: must be between 1"),
        (["--guidance", "-2"], "--guidance -2.0: must be between 0 and 50"),
    ],
)
def test_bad_sampling_values_end_in_one_line(tiny_run, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", "--ckpt", tiny_run["run_dir"], "--out", str(tmp_path / "x"), *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_missing_run_and_bad_scheduler(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["sample", "--ckpt", str(tmp_path / "nowhere")])
    assert "no such folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sample", "--runs", str(tmp_path)])
    assert "no trained diffusion model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--configs", "euler:10", "--runs", str(tmp_path)])
    assert "is not sampler:steps" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", "--ckpt", str(tmp_path), "--scheduler", "euler"])  # not a sampler: refused by the parser
    assert exit_info.value.code == 2 and "Traceback" not in capsys.readouterr().err


def test_pipeline_refuses_bad_labels_directly(tiny_run):
    from diffusion.artifacts import load_pipeline

    pipe = load_pipeline(Path(tiny_run["run_dir"]))
    with pytest.raises(ValueError, match=r"class labels must be in \[0, 9\]"):
        pipe([10], 2, 1.0, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="at least 1"):
        pipe([1], 0)


def test_train_and_sample_on_an_rgb_image_folder(tmp_path, capsys):
    from .test_data import write_tree

    write_tree(tmp_path / "tree", classes=("cats", "dogs", "owls"), per_class=8)
    args = f"--data {tmp_path / 'tree'} --image-size 8 --channels 3 --steps 6 --out {tmp_path / 'runs'} --name rgb"
    summary = run(["train", "--preset", "tiny", *args.split()], capsys)
    assert summary["eval"]["samples"] == 20 and 0 <= summary["eval"]["accuracy"] <= 1
    assert "history" not in summary  # the printed line leaves the long history out (it is in metrics.json)
    out = tmp_path / "samples"
    run(["sample", "--ckpt", summary["run_dir"], "--n", "2", "--class", "2", "--steps", "2", "--out", str(out)], capsys)
    assert written(out) == ["grid.png", "owls_0.png", "owls_1.png"]
    assert Image.open(out / "owls_0.png").mode == "RGB" and Image.open(out / "owls_0.png").size == (8, 8)
