"""Fixtures: a node-classification run trained once per session, and Planetoid folders written on the fly."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from graph.config import PRESETS, TrainConfig
from graph.data import CORA


def tiny_config(out: Path, **overrides) -> TrainConfig:
    return dataclasses.replace(PRESETS["tiny"], out=out, **overrides)


@pytest.fixture(scope="session")
def node_run(tmp_path_factory) -> dict:
    """The tiny preset (GCN on Cora, 2 seeds x 30 epochs) trained once: seconds."""
    from graph.train import train

    return train(tiny_config(tmp_path_factory.mktemp("runs"), name="tiny"))


def copy_planetoid(dest: Path, name: str = "mini") -> Path:
    """The bundled Cora files under another data set name, as a user's folder of Planetoid raw files."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in CORA.glob("ind.cora.*"):
        shutil.copy(path, dest / path.name.replace("ind.cora.", f"ind.{name}."))
    return dest
