"""Fixtures: the tiny preset trained once per session."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from multimodal.config import PRESETS, TrainConfig


def tiny_config(out: Path, **overrides) -> TrainConfig:
    return dataclasses.replace(PRESETS["tiny"], out=out, **overrides)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> dict:
    """clip-tiny on 512 scenes for 2 epochs: seconds."""
    from multimodal.train import train

    return train(tiny_config(tmp_path_factory.mktemp("runs"), name="tiny", device="cpu"))
