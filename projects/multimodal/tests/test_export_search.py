"""ONNX export parity with PyTorch, and the incremental image index searched by text and by image."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from huggingface_hub import ModelCard

from dlshared.testing import assert_one_line_error
from multimodal.artifacts import load_run
from multimodal.cli import main
from multimodal.scenes import Scene, draw


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_onnx_towers_give_pytorchs_embeddings(tiny_run, tmp_path, capsys):
    main(["export", "--ckpt", tiny_run["run_dir"], "--out", str(tmp_path / "onnx")])
    result = last_json(capsys)
    run = load_run(Path(tiny_run["run_dir"]), "cpu")
    images = torch.rand(5, 3, result["image_size"], result["image_size"])  # a batch size not used in export
    tokens = run.tokenizer(["one small red circle above a blue square", "two large green squares", "x"])
    with torch.no_grad():
        want_images = F.normalize(run.model.encode_image(images), dim=-1)
        want_texts = F.normalize(run.model.encode_text(tokens), dim=-1)
    image_session = ort.InferenceSession(result["image_encoder"])
    text_session = ort.InferenceSession(result["text_encoder"])
    got_images = image_session.run(None, {"images": images.numpy()})[0]
    got_texts = text_session.run(None, {"tokens": tokens.numpy()})[0]
    np.testing.assert_allclose(got_images, want_images.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(got_texts, want_texts.numpy(), atol=1e-4, rtol=0)
    assert result["logit_scale"] == pytest.approx(run.model.logit_scale.exp().item(), rel=1e-5)
    assert_model_card(tmp_path / "onnx" / "README.md", Path(tiny_run["run_dir"]))


def assert_model_card(path: Path, run_dir: Path) -> None:
    """The export's README.md is a Hub model card carrying the run's own test scores and its train command."""
    card = ModelCard.load(path)
    tests = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))["test"]
    assert card.data.library_name == "onnx" and card.data.datasets == ["capstones-scenes"]
    values = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    for split in ("seen", "unseen"):
        for key in ("image_to_text_r1", "text_to_image_r1", "zero_shot_mean"):
            assert values[f"test-{split}", key] == tests[split][key]
    assert "```bash\nuv run multimodal train --preset tiny --device cpu\n```" in card.text
    for section in ("## Data", "## Training", "## Results", "## Limits"):
        assert section in card.text


def picture(folder: Path, name: str, colour: str, shape: str, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    draw(Scene("two", "large", colour, shape, "left of", "yellow", "circle"), 32, seed=seed).save(folder / name)
    return folder / name


def test_indexing_again_embeds_only_new_or_changed_files(tiny_run, tmp_path, capsys):
    photos, index = tmp_path / "photos", tmp_path / "index"
    for i, (colour, shape) in enumerate([("red", "square"), ("blue", "circle"), ("green", "triangle")]):
        picture(photos, f"{i}.png", colour, shape, seed=i)
    argv = ["index", "--images", str(photos), "--out", str(index), "--ckpt", tiny_run["run_dir"], "--device", "cpu"]
    main(argv)
    assert last_json(capsys) | {"skipped": []} == {
        "out": str(index.resolve()),
        "images": 3,
        "embedded": 3,
        "reused": 0,
        "skipped": [],
    }
    vectors_before = (index / "vectors.safetensors").read_bytes()

    main(argv)  # nothing changed: nothing embedded
    assert last_json(capsys)["embedded"] == 0 and (index / "vectors.safetensors").read_bytes() == vectors_before

    picture(photos, "3.png", "yellow", "square")  # one new file
    picture(photos, "0.png", "blue", "triangle", seed=5)  # one changed file (new content, new size or time)
    os.utime(photos / "0.png", ns=(1, 1))
    (photos / "2.png").unlink()  # one removed file
    main(argv)
    result = last_json(capsys)
    assert (result["images"], result["embedded"], result["reused"]) == (3, 2, 1)
    files = [f["path"] for f in json.loads((index / "files.json").read_text(encoding="utf-8"))]
    assert files == ["0.png", "1.png", "3.png"]

    # the index answers a search by an indexed image with that image first, at similarity 1
    main(["search", "--image", str(photos / "1.png"), "--index", str(index), "--k", "3", "--device", "cpu"])
    hits = last_json(capsys)["hits"]
    assert Path(hits[0]["file"]).name == "1.png" and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    main(["search", "two large red squares", "--index", str(index), "--k", "2", "--device", "cpu"])
    hits = last_json(capsys)["hits"]
    assert len(hits) == 2 and hits[0]["score"] >= hits[1]["score"]


def test_index_skips_links_out_of_the_folder_and_refuses_foreign_folders(tiny_run, tmp_path, capsys):
    photos = tmp_path / "photos"
    picture(photos, "in.png", "red", "square")
    secret = picture(tmp_path / "elsewhere", "secret.png", "blue", "circle")
    (photos / "link.png").symlink_to(secret)
    argv = ["index", "--images", str(photos), "--ckpt", tiny_run["run_dir"], "--device", "cpu"]
    main([*argv, "--out", str(tmp_path / "index")])
    result = last_json(capsys)
    assert result["images"] == 1 and "link.png: a link out of" in result["skipped"][0]

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a user's file", encoding="utf-8")
    err = assert_one_line_error(main, [*argv, "--out", str(tmp_path / "mine")], capsys)
    assert (
        "not written by this tool" in err
        and (tmp_path / "mine" / "notes.txt").read_text(encoding="utf-8") == "a user's file"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "--index", "{index}"], "give a text query or --image"),
        (["search", " ", "--index", "{index}"], "the text query is empty"),
        (["search", "red", "--index", "{tmp}"], "not an index"),
        (["index", "--images", "{tmp}/none", "--out", "{tmp}/i"], "no such folder"),
    ],
)
def test_bad_searches_are_one_line(tiny_run, tmp_path, capsys, argv, message):
    index = tmp_path / "index"
    main(
        [
            "index",
            "--images",
            str(picture(tmp_path / "p", "a.png", "red", "square").parent),
            "--out",
            str(index),
            "--ckpt",
            tiny_run["run_dir"],
            "--device",
            "cpu",
        ]
    )
    capsys.readouterr()
    argv = [a.format(index=index, tmp=tmp_path) for a in argv]
    assert message in assert_one_line_error(main, argv, capsys)


def test_bench_reports_both_runtimes_and_both_index_sizes(tiny_run, tmp_path, capsys):
    main(["bench", "--ckpt", tiny_run["run_dir"], "--profile-out", str(tmp_path / "profile")])
    result = last_json(capsys)
    for key in ("torch_images_per_s", "torch_texts_per_s", "onnx_images_per_s", "onnx_texts_per_s"):
        assert result[key] > 0, key
    assert result["query_ms_1000"] > 0 and result["query_ms_100000"] > result["query_ms_1000"]
    # --profile: a training step of both towers under torch.profiler
    table = (tmp_path / "profile" / "top_ops.txt").read_text(encoding="utf-8")
    assert "aten::convolution_backward" in table or "aten::mm" in table
    assert result["profile"]["trace"] == str(tmp_path / "profile" / "trace.json")
