"""The command line: every bad flag value in one line, the task's own default preset, export, and the demo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from dlshared.testing import assert_one_line_error, assert_output_folder_guarded, bad_flag_cases, served_demo
from graph.artifacts import load_node_run
from graph.cli import main, with_task_preset
from graph.config import DemoArgs, EvalArgs, ExportArgs, RecommendArgs, TrainConfig
from graph.export import load_exported
from graph.model import NodeClassifier

VERBS = {"train": TrainConfig, "eval": EvalArgs, "export": ExportArgs, "recommend": RecommendArgs, "demo": DemoArgs}
CASES = [(verb, flag, value) for verb, config in VERBS.items() for flag, value in bad_flag_cases(config)]


@pytest.mark.parametrize("verb, flag, value", CASES, ids=[f"{v}{f}={x}" for v, f, x in CASES])
def test_every_bad_flag_value_is_one_line_and_creates_nothing(verb, flag, value, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may appear here, ./runs included
    argv = [verb, flag, value]
    err = assert_one_line_error(main, [*argv, "--preset", "tiny"] if verb == "train" else argv, capsys)
    assert flag in err
    assert list(tmp_path.iterdir()) == []


def test_a_model_of_the_other_task_is_refused_before_anything_is_made(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = assert_one_line_error(main, ["train", "--preset", "tiny", "--model", "lightgcn"], capsys)
    assert "--model lightgcn is not a node model" in err
    assert list(tmp_path.iterdir()) == []


def test_task_recommend_starts_from_the_recommend_preset():
    assert with_task_preset(["train", "--task", "recommend"])[-2:] == ["--preset", "recommend"]
    assert with_task_preset(["train", "--task=recommend", "--epochs", "3"])[-2:] == ["--preset", "recommend"]
    assert with_task_preset(["train", "--task", "recommend", "--preset", "lightgcn-paper"]).count("--preset") == 1
    assert with_task_preset(["train", "--epochs", "3"]) == ["train", "--epochs", "3"]
    assert with_task_preset(["eval", "--task", "recommend"]) == ["eval", "--task", "recommend"]


def test_export_rebuilds_the_same_model_without_the_run(node_run, tmp_path, capsys):
    main(["export", "--ckpt", node_run["run_dir"], "--out", str(tmp_path / "exported")])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"model.safetensors", "config.json", "card.json", "nodes.safetensors"} <= set(printed["files"])
    run = load_node_run(Path(node_run["run_dir"]), "cpu")
    exported = load_exported(tmp_path / "exported")
    graph = run.data.graph
    torch.testing.assert_close(exported(graph.x, graph.edge_index), run.model(graph.x, graph.edge_index))
    hub = NodeClassifier.from_pretrained(tmp_path / "exported", strict=True)  # the Hub's way, same folder
    torch.testing.assert_close(hub(graph.x, graph.edge_index), run.model(graph.x, graph.edge_index), atol=0, rtol=0)
    card = json.loads((tmp_path / "exported" / "card.json").read_text(encoding="utf-8"))
    assert card["test_accuracy_of_this_model"] == node_run["model_test_accuracy"]
    hub_card = ModelCard.load(tmp_path / "exported" / "README.md")  # the Hub's model card, from the same run
    (result,) = hub_card.data.eval_results
    assert (result.metric_type, result.dataset_type, result.metric_value) == (
        "accuracy",
        "cora",
        node_run["model_test_accuracy"],
    )
    assert hub_card.data.datasets == ["cora"] and "graph-ml" in hub_card.data.tags
    assert "```bash\nuv run graph train --preset tiny\n```" in hub_card.text
    for section in ("## Data", "## Training", "## Results", "## Limits"):
        assert section in hub_card.text


def test_push_to_hub_uploads_the_finished_export_folder(node_run, tmp_path, capsys, fake_hub):
    """The fastest export of the projects that push (tinygpt, tuner, diffusion, graph, multimodal all call
    dlshared.hub.push_folder the same way): the complete folder, card included, goes to the repo named."""
    out = tmp_path / "exported"
    main(["export", "--ckpt", node_run["run_dir"], "--out", str(out), "--push-to-hub", "me/cora-gcn"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["pushed"] == "https://huggingface.co/me/cora-gcn/commit/0"
    (create, upload) = fake_hub
    assert create[:2] == ("create_repo", "me/cora-gcn") and create[2] == {"repo_type": "model", "exist_ok": True}
    assert upload[:2] == ("upload_folder", "me/cora-gcn") and upload[2].resolve() == out.resolve()
    assert {"README.md", "model.safetensors", "config.json", "card.json"} <= set(upload[3])
    assert upload[4]["repo_type"] == "model"


def test_export_never_writes_into_a_folder_it_did_not_create(node_run, tmp_path, capsys):
    assert_output_folder_guarded(
        main, ["export", "--ckpt", node_run["run_dir"]], [node_run["run_dir"]], tmp_path, capsys
    )


@pytest.fixture(scope="module")
def client(node_run):

    demo = __import__("graph.demo", fromlist=["build_demo"]).build_demo(load_node_run(Path(node_run["run_dir"]), "cpu"))
    with served_demo(demo) as client:
        yield client


def test_the_demo_describes_a_paper_with_its_neighbours(client, node_run):
    run = load_node_run(Path(node_run["run_dir"]), "cpu")
    text, plot = client.predict(0, api_name="/describe")
    predicted = run.data.classes[int(run.model(run.data.graph.x, run.data.graph.edge_index)[0].argmax())]
    assert "Paper 0" in text and f"**Predicted:** {predicted}" in text
    assert f"**True subject:** {run.data.classes[int(run.data.graph.y[0])]}" in text
    neighbours = run.data.graph.edge_index[0][run.data.graph.edge_index[1] == 0].tolist()
    assert f"**{len(neighbours)} neighbours**" in text and all(f"{n} (" in text for n in neighbours)
    assert plot is not None


@pytest.mark.parametrize("bad, message", [(-1, "numbered 0 to 2707"), (2708, "numbered 0 to 2707"), (None, "Enter")])
def test_the_demo_answers_a_bad_paper_number_with_a_message_and_stays_up(client, bad, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=message):
        client.predict(bad, api_name="/describe")
    text, _ = client.predict(5, api_name="/describe")  # the server is still serving
    assert "Paper 5" in text


def test_fanout_needs_one_number_per_layer(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = assert_one_line_error(main, ["train", "--preset", "tiny", "--model", "sage", "--fanout", "10"], capsys)
    assert "--fanout 10: give one number per layer (--layers 2)" in err
    assert list(tmp_path.iterdir()) == []


def test_train_with_fanout_trains_on_sampled_mini_batches(tmp_path, capsys):
    main(
        ["train", "--preset", "tiny", "--model", "sage", "--fanout", "5", "5", "--batch-size", "64", "--seeds", "1"]
        + ["--out", str(tmp_path), "--name", "sampled"]
    )
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    metrics = json.loads((tmp_path / "graph" / "sampled" / "metrics.json").read_text(encoding="utf-8"))
    assert printed["test_accuracy"] > 0.5 and metrics["seeds"] == 1
    assert metrics["per_seed"][0]["epochs"] == 30  # the tiny preset never stops early (patience 0)
    config = json.loads((tmp_path / "graph" / "sampled" / "config.json").read_text(encoding="utf-8"))
    assert config["fanout"] == [5, 5] and config["model"] == "sage"
