"""Fixtures: the tiny pipeline (pretrain -> SFT -> DPO, seconds), run once per session and shared."""

from __future__ import annotations

import pytest

from tuner.config import PRESETS, replace


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> dict:
    from tuner.train import train

    return train(replace(PRESETS["tiny"], out=tmp_path_factory.mktemp("runs"), name="tiny"))
