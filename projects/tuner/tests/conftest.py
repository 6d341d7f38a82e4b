"""Fixtures: the tiny pipeline (pretrain -> SFT -> DPO, seconds), run once per session and shared."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tuner.config import PRESETS


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> dict:
    from tuner.train import train

    return train(replace(PRESETS["tiny"], out=tmp_path_factory.mktemp("runs"), name="tiny"))


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Overrides dlshared.testing's reset: here trl's trainers own Accelerate's state, and a session-scoped trainer
    must keep it from one test to the next."""
    yield
