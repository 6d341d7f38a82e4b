"""`--data owner/name`: which values are Hub dataset ids, how one is loaded, and the one-line error offline."""

import time
from pathlib import Path

import pytest

from dlshared.cli import UserError
from dlshared.hubdata import HubDataset, load_hub_dataset, parse_hub_id

datasets = pytest.importorskip("datasets")  # a dependency of the projects that take Hub data, not of dlshared


def test_hub_ids_name_repo_config_and_split(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_hub_id("ylecun/mnist") == HubDataset("ylecun/mnist", None, "train")
    assert parse_hub_id("ylecun/mnist:test") == HubDataset("ylecun/mnist", None, "test")
    assert parse_hub_id("trl-lib/Capybara:train[:100]").split == "train[:100]"  # datasets' slices keep their colon
    wikitext = parse_hub_id("Salesforce/wikitext/wikitext-2-raw-v1:validation")
    assert wikitext == HubDataset("Salesforce/wikitext", "wikitext-2-raw-v1", "validation")
    assert str(wikitext) == "Salesforce/wikitext/wikitext-2-raw-v1:validation"


def test_local_paths_and_their_typos_stay_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner").mkdir()
    (tmp_path / "owner" / "name").write_text("a file that happens to look like an id")
    (tmp_path / "data").mkdir()
    typos = ["/no/such/file.txt", "data/tiny.txt", "corpus/pairs.jsonl", "corpus", "./x/y", "../x/y", "a--b/c"]
    for value in ["owner/name", "data/tiny", *typos, "C:\\data\\x", "x/y/z/w", None]:
        assert parse_hub_id(value) is None, value  # exists, or a path that is missing: the project's own error
    assert parse_hub_id(Path("ylecun/mnist")) is None  # a Path object is always local


def test_load_passes_repo_config_and_split(monkeypatch):
    calls = []

    def fake_load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        return datasets.Dataset.from_dict({"text": ["a", "b"]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    loaded = load_hub_dataset(parse_hub_id("Salesforce/wikitext/wikitext-2-raw-v1:train[:2]"), "--data", "a file")
    assert calls == [("Salesforce/wikitext", "wikitext-2-raw-v1", "train[:2]")] and loaded["text"] == ["a", "b"]


def test_offline_hub_id_is_one_line_error_saying_what_to_do():
    # the real load_dataset, offline (HF_HUB_OFFLINE=1, set by dlshared.testing): refused at once, no network
    started = time.perf_counter()
    with pytest.raises(UserError) as info:
        load_hub_dataset(HubDataset("nobody-here/no-such-dataset"), "--data", "a local UTF-8 text file")
    message = str(info.value)
    assert time.perf_counter() - started < 10 and "\n" not in message
    assert message.startswith("--data nobody-here/no-such-dataset:train: neither a local path nor a Hub dataset")
    assert "OfflineModeIsEnabled" in message  # datasets' reason
    assert "run once with network" in message and "or pass a local UTF-8 text file" in message


def test_missing_config_split_or_rows_say_which_exist(monkeypatch):
    def missing_config(path, name=None, split=None):
        raise ValueError("Config name is missing.\nPlease pick one among the available configs: ['a', 'b']\nExample")

    monkeypatch.setattr(datasets, "load_dataset", missing_config)
    with pytest.raises(UserError, match=r"configs: \['a', 'b'\]; name one as o/n/CONFIG"):
        load_hub_dataset(HubDataset("o/n"), "--data", "a file")

    def unknown_split(path, name=None, split=None):
        raise ValueError(f"Unknown split \"{split}\". Should be one of ['train_prefs'].")

    monkeypatch.setattr(datasets, "load_dataset", unknown_split)
    with pytest.raises(UserError, match=r"one of \['train_prefs'\].; name one as o/n:SPLIT"):
        load_hub_dataset(HubDataset("o/n"), "--data", "a file")

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.Dataset.from_dict({"text": []}))
    with pytest.raises(UserError, match="the split has no rows"):
        load_hub_dataset(HubDataset("o/n"), "--data", "a file")
