"""Checkpoint files: atomic writes, safetensors weights, weights-only resume state, RNG capture."""

import os
import pickle
import random

import numpy as np
import pytest
import torch

from dlshared.checkpoint import (
    atomic_path,
    load_json,
    load_resume_state,
    load_weights,
    save_json,
    save_resume_state,
    save_weights,
)
from dlshared.seed import capture_rng_state, restore_rng_state, seed_everything


def test_failed_write_keeps_old_file(tmp_path):
    target = tmp_path / "metrics.json"
    save_json({"acc": 0.5}, target)
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half a fi", encoding="utf-8")
        raise RuntimeError("killed mid-write")
    assert load_json(target) == {"acc": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left behind


def test_atomic_write_replaces_and_has_normal_permissions(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    save_json({"acc": 0.5}, target)
    save_json({"acc": 0.9}, target)
    assert load_json(target) == {"acc": 0.9}
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's owner-only 0600


def test_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    model[0].weight.data = model[0].weight.data.t().contiguous().t()  # non-contiguous parameter
    save_weights(model, tmp_path / "model.safetensors", metadata={"step": "7"})
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    load_weights(fresh, tmp_path / "model.safetensors")
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_resume_state_round_trip(tmp_path):
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(8, 4)).sum().backward()
    opt.step()
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "step": 3,
        "rng": capture_rng_state(),
    }
    save_resume_state(state, tmp_path / "resume.pt")

    loaded = load_resume_state(tmp_path / "resume.pt")
    assert loaded["step"] == 3
    model2 = torch.nn.Linear(4, 2)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-2)
    model2.load_state_dict(loaded["model"])
    opt2.load_state_dict(loaded["optimizer"])
    exp_avg = opt.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], exp_avg)


class _Payload:  # stands in for an arbitrary pickled object in an untrusted file
    pass


def test_resume_state_refuses_pickled_objects(tmp_path):
    torch.save({"evil": _Payload()}, tmp_path / "resume.pt")
    with pytest.raises(pickle.UnpicklingError):
        load_resume_state(tmp_path / "resume.pt")


def _draws():
    return (
        random.random(),
        random.gauss(0, 1),
        np.random.rand(3).tolist(),
        np.random.randn(),
        torch.rand(3).tolist(),
    )


def test_rng_capture_restore_through_a_file(tmp_path):
    seed_everything(123)
    _draws()
    np.random.randn()  # leaves a cached gaussian in NumPy's legacy state
    save_resume_state({"rng": capture_rng_state()}, tmp_path / "resume.pt")
    expected = _draws()
    seed_everything(999)  # scramble everything
    restore_rng_state(load_resume_state(tmp_path / "resume.pt")["rng"])
    assert _draws() == expected


def test_training_state_round_trip_restores_everything(tmp_path):
    from dlshared.checkpoint import restore_training_state, save_resume_state, training_state

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    save_resume_state(training_state(model, optimizer, scheduler, epoch=3, history=[1.5]), tmp_path / "r.pt")
    expected_next = torch.rand(3)  # what the RNG draws right after the checkpoint

    fresh = torch.nn.Linear(3, 2)
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    fresh_scheduler = torch.optim.lr_scheduler.StepLR(fresh_optimizer, step_size=1, gamma=0.5)
    progress = restore_training_state(tmp_path / "r.pt", fresh, fresh_optimizer, fresh_scheduler)
    assert progress == {"epoch": 3, "history": [1.5]}
    assert torch.equal(fresh.weight, model.weight)
    assert fresh_optimizer.state_dict()["state"][0]["step"] == 1
    assert fresh_scheduler.get_last_lr() == scheduler.get_last_lr()
    assert torch.equal(torch.rand(3), expected_next)
