"""The command line: every bad flag value in one line; train on a CSV, then zero-shot on an ImageFolder tree."""

from __future__ import annotations

import json

import pytest

from dlshared.testing import assert_one_line_error, bad_flag_cases
from multimodal.cli import main
from multimodal.config import DemoArgs, EvalArgs, ExportArgs, IndexArgs, SearchArgs, TrainConfig, ZeroShotArgs
from multimodal.scenes import Scene, draw

VERBS = {
    "train": TrainConfig,
    "eval": EvalArgs,
    "zeroshot": ZeroShotArgs,
    "export": ExportArgs,
    "index": IndexArgs,
    "search": SearchArgs,
    "demo": DemoArgs,
}
REQUIRED = {"zeroshot": ["--data", "d"], "index": ["--images", "i", "--out", "o"]}  # so only the bad flag is wrong
CASES = [(verb, flag, value) for verb, config in VERBS.items() for flag, value in bad_flag_cases(config)]


@pytest.mark.parametrize("verb, flag, value", CASES, ids=[f"{v}{f}={x}" for v, f, x in CASES])
def test_every_bad_flag_value_is_one_line_and_creates_nothing(verb, flag, value, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may appear here, ./runs included
    argv = [verb, flag, value, *REQUIRED.get(verb, [])]
    err = assert_one_line_error(main, [*argv, "--preset", "tiny"] if verb == "train" else argv, capsys)
    assert flag in err
    assert list(tmp_path.iterdir()) == []


def test_train_on_an_open_clip_csv_then_zero_shot_on_an_image_folder(tmp_path, capsys):
    # a user's captioned images as open_clip's CSV ...
    (tmp_path / "pics").mkdir()
    lines = ["filepath,title"]
    for i, (colour, shape) in enumerate([(c, s) for c in ("red", "blue") for s in ("circle", "square")] * 10):
        scene = Scene("one", "large", colour, shape, "left of", "yellow", "triangle")
        draw(scene, 32, seed=i).save(tmp_path / "pics" / f"{i}.png")
        lines.append(f"pics/{i}.png,{scene.caption()}")
    (tmp_path / "captions.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # ... and a labelled ImageFolder tree to classify: one folder per class
    for shape in ("circle", "square"):
        (tmp_path / "classes" / shape).mkdir(parents=True)
        for i in range(3):
            scene = Scene("one", "large", "red", shape, "above", "blue", "triangle")
            draw(scene, 32, seed=100 + i).save(tmp_path / "classes" / shape / f"{i}.png")

    out = tmp_path / "runs"
    csv = str(tmp_path / "captions.csv")
    flags = ["--batch-size", "16", "--min-steps", "9", "--out", str(out), "--name", "csv"]
    main(["train", "--preset", "tiny", "--data", csv, *flags])
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # 32 training pairs make 2 batches of 16 an epoch: the preset's 2 epochs become 5 to make --min-steps 9
    assert trained["epochs"] == 5 and trained["steps"] == 10
    assert trained["data"] == str(tmp_path / "captions.csv") and set(trained["test"]) == {"seen"}
    assert "zero_shot" not in trained["test"]["seen"]  # real data: no scenes to ask attributes of

    run = out / "multimodal" / "csv"
    main(["zeroshot", "--ckpt", str(run), "--data", str(tmp_path / "classes"), "--device", "cpu"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["classes"] == ["circle", "square"] and result["images"] == 6
    assert sum(map(sum, result["confusion"])) == 6
    assert result["accuracy"] == sum(result["confusion"][i][i] for i in range(2)) / 6

    main(["eval", "--ckpt", str(run), "--device", "cpu"])  # the saved weights give the run's own figures
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["test"] == trained["test"]


def test_zeroshot_refuses_what_it_cannot_read(tiny_run, tmp_path, capsys):
    run = tiny_run["run_dir"]
    err = assert_one_line_error(main, ["zeroshot", "--ckpt", run, "--data", str(tmp_path / "none")], capsys)
    assert "no such folder" in err
    (tmp_path / "empty").mkdir()
    err = assert_one_line_error(main, ["zeroshot", "--ckpt", run, "--data", str(tmp_path / "empty")], capsys)
    assert "--data" in err
    err = assert_one_line_error(main, ["zeroshot", "--ckpt", run, "--data", str(tmp_path), "--templates", "x"], capsys)
    assert "needs {}" in err
