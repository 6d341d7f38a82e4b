"""Training end to end: files written, loss falls, resume continues exactly, a hand-made COCO folder, DDP."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from detector.cli import main
from detector.config import PRESETS
from detector.train import train
from dlshared.checkpoint import save_resume_state
from dlshared.runs import RunLock


def tiny(out: Path, **overrides):
    return dataclasses.replace(PRESETS["tiny"], out=out, shapes_root=out / "shapes", **overrides)


def test_tiny_run_writes_a_loadable_detector_and_the_loss_falls(tiny_run):
    run_dir = Path(tiny_run["run_dir"])
    for name in ("config.json", "card.json", "model.safetensors", "resume.pt", "metrics.json"):
        assert (run_dir / name).is_file(), name
    first, last = tiny_run["history"][0], tiny_run["history"][-1]
    assert last["train_loss"] < first["train_loss"]
    assert 0.0 <= tiny_run["test_map"] <= 1.0 and tiny_run["steps"] == 6  # 48 images / 16 per batch x 2 epochs

    from detector.artifacts import load_detector

    loaded = load_detector(run_dir, "cpu")
    assert loaded.classes == ["circle", "square", "triangle"] and loaded.image_size == 64
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(run_dir)).Reload().Tags()
    for tag in ("train/loss", "train/heatmap", "train/size", "train/lr", "train/images_per_s", "val/map", "test/map"):
        assert tag in tags["scalars"], tag
    assert "curves" in tags["images"]
    assert_png(run_dir / "curves.png", min_size=(600, 300))


def assert_png(path: Path, min_size: tuple[int, int]) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= min_size[0] and image.height >= min_size[1], image


def test_eval_reproduces_the_saved_metrics(tiny_run, capsys):
    main(["eval", "--ckpt", tiny_run["run_dir"]])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["images"] == 50
    for name in ("map", "map_50", "map_75"):
        assert printed[name] == tiny_run[f"test_{name}"], name
    assert printed["pictures"] == {"detections": str(Path(tiny_run["run_dir"]) / "detections.png")}


def test_eval_draws_test_images_with_their_detections_where_asked(tiny_run, tmp_path, capsys):
    main(["eval", "--ckpt", tiny_run["run_dir"], "--pictures", str(tmp_path / "pictures")])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["pictures"] == {"detections": str(tmp_path / "pictures" / "detections.png")}
    # three 64-px test images of the tiny preset, each enlarged 4 times, side by side
    assert_png(tmp_path / "pictures" / "detections.png", min_size=(3 * 256, 256))


def test_a_named_run_is_not_trained_over_without_overwrite(tiny_run, capsys):
    run_dir = Path(tiny_run["run_dir"])
    argv = ["train", "--preset", "tiny", "--out", str(run_dir.parent.parent), "--name", run_dir.name]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and "already holds a run" in capsys.readouterr().err
    assert (run_dir / "model.safetensors").is_file()  # left as it was


def test_resume_ends_like_an_uninterrupted_run(tmp_path, tiny_run, monkeypatch):
    import dlshared.training

    def crash_after_saving(state, path):  # the process dies right after its first checkpoint
        save_resume_state(state, path)
        raise RuntimeError("killed")

    cfg = tiny(tmp_path, name="halves")
    monkeypatch.setattr(dlshared.training, "save_resume_state", crash_after_saving)
    with pytest.raises(RuntimeError, match="killed"):
        train(cfg)
    monkeypatch.undo()
    for lock in list(RunLock.held_here):  # a real crash ends the process, and the OS releases its run lock
        lock.release()
    with pytest.raises(AssertionError):  # one epoch of two: not yet the same weights
        _assert_same_weights(tmp_path / "detector" / "halves", Path(tiny_run["run_dir"]))
    resumed = train(dataclasses.replace(cfg, resume=True))
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["history"] == tiny_run["history"] and resumed["test_map"] == tiny_run["test_map"]
    _assert_same_weights(tmp_path / "detector" / "halves", Path(tiny_run["run_dir"]))


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    for name, tensor in wa.items():
        torch.testing.assert_close(tensor, wb[name], rtol=1e-5, atol=1e-6, msg=name)


def write_hand_made_coco(root: Path, n: int, seed: int) -> Path:
    """A COCO folder drawn with PIL, not by the project's generator: red crates (rectangles) and blue balls
    (ellipses) on grey, 96 x 72 images, polygon segmentations, category ids 7 and 3."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True)
    images, annotations = [], []
    for i in range(n):
        canvas = Image.new("RGB", (96, 72), (110, 110, 110))
        draw = ImageDraw.Draw(canvas)
        for cat, colour in ((7, (220, 30, 30)), (3, (30, 30, 220))):
            w, h = int(rng.integers(14, 30)), int(rng.integers(14, 30))
            x, y = int(rng.integers(0, 96 - w)), int(rng.integers(0, 72 - h))
            (draw.rectangle if cat == 7 else draw.ellipse)([x, y, x + w - 1, y + h - 1], fill=colour)
            poly = [x, y, x + w, y, x + w, y + h, x, y + h]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": cat,
                    "iscrowd": 0,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "segmentation": [poly],
                }
            )
        canvas.save(root / "img" / f"{i}.png")
        images.append({"id": i, "file_name": f"img/{i}.png", "width": 96, "height": 72})
    categories = [{"id": 7, "name": "crate"}, {"id": 3, "name": "ball"}]
    (root / "annotations.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories}), encoding="utf-8"
    )
    return root


def test_train_and_eval_on_a_coco_folder_the_project_did_not_generate(tmp_path, capsys):
    data = write_hand_made_coco(tmp_path / "mine", n=40, seed=1)
    main(["train", "--preset", "tiny", "--data", str(data), "--out", str(tmp_path), "--name", "mine", "--epochs", "3"])
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    card = json.loads((Path(metrics["run_dir"]) / "card.json").read_text(encoding="utf-8"))
    assert card["classes"] == ["ball", "crate"]  # the file's categories, in id order
    other = write_hand_made_coco(tmp_path / "other", n=6, seed=2)  # never seen in training
    main(["eval", "--ckpt", metrics["run_dir"], "--data", str(other)])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["images"] == 6 and 0.0 <= printed["map"] <= printed["map_50"] <= 1.0


def test_a_small_folder_trains_for_min_steps_not_for_the_preset_epochs(tmp_path):
    data = write_hand_made_coco(tmp_path / "mine", n=24, seed=1)  # about 16 training images: one batch an epoch
    metrics = train(tiny(tmp_path, data=data, name="small", epochs=2, min_steps=5))
    assert metrics["epochs"] == 5 and metrics["steps"] == 5 and len(metrics["history"]) == 5


def test_tiny_preset_trains_under_two_process_ddp(ddp_run):
    rank0, rank1 = ddp_run
    assert rank0["processes"] == rank1["processes"] == 2
    # 3 batches of 16 dealt to 2 ranks: one round of 2 full batches per epoch; the odd batch out is dropped
    assert rank0["steps"] == rank1["steps"] == 3
    assert rank0["test_map"] == rank1["test_map"]  # evaluated once, shared with every rank
    assert (Path(rank0["run_dir"]) / "model.safetensors").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--data", "/no/such/folder"], "no such folder"),
        (["train", "--preset", "huge"], "unknown preset"),
        (["eval", "--ckpt", "/no/such/run"], "not a detector run folder"),
        (["train", "--device", "tpu"], "device"),
        (["segment", "--resume", "--out", "/no/such/root"], "no run with a resume.pt"),
    ],
)
def test_user_errors_end_in_one_line_and_exit_code_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err.lower(), err


def test_segment_verb_trains_a_unet_on_the_same_data(tmp_path, capsys):
    tiny_shapes = ["--preset", "tiny", "--shapes-root", str(tmp_path / "shapes")]
    main(["segment", *tiny_shapes, "--out", str(tmp_path), "--name", "unet"])
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert Path(metrics["run_dir"]) == tmp_path / "detector-unet" / "unet"
    assert 0.0 <= metrics["test_miou"] <= 1.0 and (tmp_path / "detector-unet" / "unet" / "model.safetensors").is_file()


def test_onnx_export_matches_pytorch(tiny_run, tmp_path, capsys):
    from detector.artifacts import load_detector
    from detector.boxes import decode
    from detector.export import OnnxDetector

    main(["export", "--ckpt", tiny_run["run_dir"], "--out", str(tmp_path / "export")])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["max_abs_diff"] < 1e-4 and printed["onnx"] == str(tmp_path / "export" / "model.onnx")
    card = json.loads((tmp_path / "export" / "card.json").read_text(encoding="utf-8"))
    assert card["classes"] == ["circle", "square", "triangle"] and card["image_size"] == 64
    loaded = load_detector(tiny_run["run_dir"], "cpu")
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    onnx = OnnxDetector(tmp_path / "export" / "model.onnx")(images, score_threshold=0.0, max_detections=20)
    with torch.no_grad():
        ours = decode(loaded.model(images), 4, 20, 0.0)
    for a, b in zip(onnx, ours, strict=True):
        torch.testing.assert_close(a["scores"], b["scores"], atol=1e-4, rtol=1e-4)
        assert torch.equal(a["labels"], b["labels"])
    assert_model_card(tmp_path / "export" / "README.md", Path(tiny_run["run_dir"]))
    assert_from_pretrained_gives_the_same_maps(tmp_path / "export", loaded)


def assert_from_pretrained_gives_the_same_maps(folder: Path, loaded) -> None:
    """The export folder is a Hub model folder: CenterNet.from_pretrained rebuilds the network from config.json
    alone and loads model.safetensors (strict: every weight and buffer); its maps equal the run's exactly."""
    from detector.model import CenterNet

    hub = CenterNet.from_pretrained(folder, strict=True)
    assert (hub.cfg, hub.classes, hub.image_size) == (loaded.model.cfg, loaded.classes, loaded.image_size)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours, theirs = loaded.model(images), hub(images)
    for name in ("heatmap", "size", "offset"):
        torch.testing.assert_close(theirs[name], ours[name], atol=0, rtol=0)


def assert_model_card(path: Path, run_dir: Path) -> None:
    """The export's README.md is a Hub model card carrying the run's own test mAP and the command that trained it."""
    from huggingface_hub import ModelCard

    card = ModelCard.load(path)
    saved = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert card.data.library_name == "pytorch" and {"object-detection", "onnx", "pytorch_model_hub_mixin"} <= set(
        card.data.tags
    )
    assert card.data.datasets == ["synthetic-shapes"]
    values = {(r.metric_type, r.dataset_split): r.metric_value for r in card.data.eval_results}
    assert values == {("map", "test"): saved["test_map"], ("map_50", "test"): saved["test_map_50"]}
    assert "```bash\nuv run detector train --preset tiny\n```" in card.text  # out, name, shapes_root: ignored
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    assert str(config["shapes_root"]) not in card.text  # a path of the training machine: the card travels
    for section in ("## Data", "## Training", "## Results", "## Limits"):
        assert section in card.text


def test_bench_reports_training_and_inference_speed(tmp_path, capsys):
    timing = ["--batch-size", "4", "--steps", "1", "--warmup", "0"]  # one timed call of each kind
    profile = ["--profile-out", str(tmp_path / "profile")]  # and the training step under torch.profiler
    main(["bench", "--preset", "tiny", *timing, *profile, "--shapes-root", str(tmp_path / "shapes")])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("train_images_per_s", "infer_images_per_s_torch", "infer_images_per_s_onnxruntime"):
        assert result[key] > 0, key
    assert result["profile"]["trace"] == str(tmp_path / "profile" / "trace.json")
    assert "aten::convolution_backward" in (tmp_path / "profile" / "top_ops.txt").read_text(encoding="utf-8")
