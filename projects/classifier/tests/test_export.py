"""ONNX export: parity with PyTorch, dynamic batch, int8 size and accuracy, evaluation through ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from huggingface_hub import ModelCard
from torch.utils.data import DataLoader

from classifier.artifacts import load_predictor, load_torch_model
from classifier.cli import main
from classifier.data import load_data
from classifier.evaluate import classification_metrics, predict
from classifier.model import Classifier
from dlshared.testing import FakeHfApi, assert_one_line_error


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export")
    main(["export", "--ckpt", trained_run["run_dir"], "--out", str(out)])
    return out


def test_onnx_matches_pytorch_on_the_test_split(trained_run, exported):
    model, cfg, card = load_torch_model(Path(trained_run["run_dir"]))
    test = load_data(cfg).test
    torch_logits, labels = predict(lambda x: model(x), DataLoader(test, 128))
    onnx = load_predictor(exported / "model.onnx")
    onnx_logits, _ = predict(onnx, DataLoader(test, 128))
    torch.testing.assert_close(onnx_logits, torch_logits, atol=1e-4, rtol=0)
    assert (onnx_logits.argmax(1) == torch_logits.argmax(1)).all()
    assert classification_metrics(onnx_logits, labels, card["classes"])["accuracy"] == trained_run["test_accuracy"]


def test_batch_dimension_is_dynamic(exported):
    session = ort.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 7, 300):
        (logits,) = session.run(None, {"images": np.random.rand(batch, 1, 32, 32).astype(np.float32)})
        assert logits.shape == (batch, 10)


def test_int8_is_3x_smaller_and_within_one_point(trained_run, exported, capsys):
    assert (exported / "model.onnx").stat().st_size >= 3 * (exported / "model.int8.onnx").stat().st_size
    main(["eval", "--ckpt", str(exported / "model.int8.onnx")])
    int8 = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert int8["model"] == "onnxruntime" and int8["samples"] == 360
    assert trained_run["test_accuracy"] > 0.9, "the fixture model should be good enough to compare"
    assert int8["accuracy"] >= trained_run["test_accuracy"] - 0.01


def test_export_folder_is_self_describing(exported):
    for name in ("card.json", "config.json", "train_config.json", "model.safetensors", "export.json", "README.md"):
        assert (exported / name).is_file()
    assert json.loads((exported / "export.json").read_text(encoding="utf-8"))["compression"] >= 3


def test_model_card_reports_the_runs_own_metrics(trained_run, exported):
    card = ModelCard.load(exported / "README.md")
    saved = json.loads((Path(trained_run["run_dir"]) / "metrics.json").read_text(encoding="utf-8"))
    assert card.data.library_name == "pytorch" and "image-classification" in card.data.tags
    assert {"onnx", "pytorch_model_hub_mixin"} <= set(card.data.tags)
    assert card.data.datasets == ["sklearn-digits"]
    (result,) = card.data.eval_results
    assert (result.task_type, result.metric_type, result.dataset_split) == ("image-classification", "accuracy", "test")
    assert result.metric_value == saved["test_accuracy"]
    # the shipped run is the quick preset as it is: the command that rebuilds it needs no flag
    assert "```bash\nuv run classifier train\n```" in card.text
    for section in ("## Data", "## Training", "## Results", "## Limits"):
        assert section in card.text


def test_from_pretrained_gives_the_runs_logits(trained_run, exported):
    """The export folder is a Hub model folder: Classifier.from_pretrained rebuilds the network from config.json
    alone (no run folder) and loads model.safetensors; every weight and buffer must arrive (strict)."""
    model, cfg, card = load_torch_model(Path(trained_run["run_dir"]))
    loaded = Classifier.from_pretrained(exported, strict=True)
    assert loaded.classes == card["classes"] and loaded.image_size == card["image_size"]
    images = torch.rand(16, card["in_channels"], card["image_size"], card["image_size"])
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images), atol=0, rtol=0)
    config = json.loads((exported / "config.json").read_text(encoding="utf-8"))
    assert config["mean"] == pytest.approx(model.mean.flatten().tolist())  # the real statistics, not placeholders


def test_push_to_hub_uploads_the_finished_folder(trained_run, tmp_path, capsys, fake_hub):
    out = tmp_path / "export"
    main(["export", "--ckpt", trained_run["run_dir"], "--out", str(out), "--format", "onnx", "--push-to-hub", "me/x"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["pushed"] == "https://huggingface.co/me/x/commit/0"
    (create, upload) = fake_hub
    assert create == ("create_repo", "me/x", {"repo_type": "model", "exist_ok": True})
    assert upload[:3] == ("upload_folder", "me/x", out.resolve())
    assert {"README.md", "config.json", "model.safetensors", "model.onnx", "card.json"} <= set(upload[3])


def test_push_to_hub_without_a_token_is_one_line_and_keeps_the_export(trained_run, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", lambda: FakeHfApi([], token=None))
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    out = tmp_path / "export"
    argv = ["export", "--ckpt", trained_run["run_dir"], "--out", str(out), "--format", "onnx", "--push-to-hub", "me/x"]
    err = assert_one_line_error(main, argv, capsys)
    assert "hf auth login" in err and str(out) in err
    assert (out / "model.safetensors").is_file()  # the export itself is complete, ready to push later
