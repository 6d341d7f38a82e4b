"""Real data in open_clip's formats: a filepath,title CSV and a folder of images with .txt captions."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlshared.cli import UserError
from multimodal.data import read_pairs, real_splits
from multimodal.scenes import draw, make_scenes


def write_images(folder: Path, n: int = 12) -> list[tuple[str, str]]:
    """n scene pictures as PNG files, with their captions: what a user's data looks like."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, scene in enumerate(make_scenes(n, seed=9)):
        draw(scene, 32, seed=i).save(folder / f"img{i}.png")
        rows.append((f"img{i}.png", scene.caption()))
    return rows


def test_open_clip_csv_with_its_separator_and_relative_paths(tmp_path):
    rows = write_images(tmp_path / "pics")
    csv = tmp_path / "train.tsv"
    csv.write_text("title\tfilepath\n" + "".join(f"{c}\tpics/{f}\n" for f, c in rows), encoding="utf-8")
    pairs = read_pairs(csv, separator="\t")
    assert [(p.name, c) for p, c in pairs] == rows
    splits = real_splits(csv, lambda image: image.size, seed=0, separator="\t")
    assert len(splits.train) == 10 and len(splits.val) == len(splits.test["seen"]) == 1
    assert splits.train[0][0] == (32, 32) and splits.scenes == {}


def test_a_folder_of_images_with_same_named_captions(tmp_path):
    rows = write_images(tmp_path / "data")
    for name, caption in rows:
        (tmp_path / "data" / name).with_suffix(".txt").write_text(caption + "\n", encoding="utf-8")
    pairs = read_pairs(tmp_path / "data")
    assert sorted((p.name, c) for p, c in pairs) == sorted(rows)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,caption\n", "must name the columns filepath and title"),
        ("filepath,title\npics/img0.png,a caption\npics/img1.png\n", "line 3: expected a filepath and a non-empty"),
        ("filepath,title\npics/img0.png,a caption\npics/nothere.png,b\n", "line 3: no image file pics/nothere.png"),
        ("filepath,title\npics/img0.png,only one\n", "1 image-caption pair(s); at least 10"),
    ],
)
def test_a_malformed_csv_is_refused_with_its_line(tmp_path, text, message):
    write_images(tmp_path / "pics", 2)
    (tmp_path / "bad.csv").write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match="bad.csv") as err:
        read_pairs(tmp_path / "bad.csv")
    assert message in str(err.value)


def test_an_image_without_its_caption_file_is_named(tmp_path):
    write_images(tmp_path / "data", 2)
    with pytest.raises(UserError, match=r"img0.png: no caption file img0.txt"):
        read_pairs(tmp_path / "data")
