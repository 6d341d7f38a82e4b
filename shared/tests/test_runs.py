"""Run folders, device choice and the throughput meter."""

import dataclasses
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dlshared import monitor
from dlshared.cache import cache_dir
from dlshared.cli import UserError
from dlshared.device import pick_device, resolve_precision
from dlshared.monitor import Throughput, mfu
from dlshared.processes import in_process_group, run_distributed
from dlshared.runs import config_to_dict, latest_run, make_run_dir, resolve_run_dir


def test_latest_run_picks_newest_holding_the_file(tmp_path):
    for i, name in enumerate(["a", "b", "c"]):
        run = make_run_dir("proj", name, root=tmp_path)
        (run / "metrics.json").write_text("{}", encoding="utf-8")
        os.utime(run / "metrics.json", (1000 + i, 1000 + i))  # explicit times: file systems tick coarsely
    make_run_dir("proj", "d-unfinished", root=tmp_path)  # newest folder, but no metrics yet
    assert latest_run("proj", tmp_path, required="metrics.json") == tmp_path / "proj" / "c"
    os.utime(tmp_path / "proj" / "a" / "metrics.json", (2000, 2000))
    assert latest_run("proj", tmp_path, required="metrics.json").name == "a"
    assert latest_run("other", tmp_path) is None


def test_config_to_dict_makes_paths_strings():
    @dataclasses.dataclass
    class Cfg:
        data: Path = Path("x/y")
        lr: float = 0.1

    assert config_to_dict(Cfg()) == {"data": "x/y", "lr": 0.1}


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("tpu")
    with pytest.raises(ValueError, match="cuda:99"):
        pick_device("cuda:99")  # no machine has that many GPUs; without CUDA the message names it too


@pytest.mark.parametrize(
    ("amx", "avx512_bf16", "auto"), [(True, False, "bf16"), (False, True, "bf16"), (False, False, "no")]
)
def test_auto_precision_is_bf16_only_on_a_cpu_that_computes_it(monkeypatch, amx, avx512_bf16, auto):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == auto
    assert [resolve_precision(p, cpu) for p in ("no", "bf16", "fp16")] == ["no", "bf16", "fp16"]  # asked for: kept


def test_throughput_skips_warmup(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(monitor, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    meter = Throughput(warmup=2)
    for t in (5.0, 6.0):  # slow warm-up steps (compilation, allocator growth)
        now[0] = t
        meter.update(10)
        assert meter.rate == 0.0
    for t in (7.0, 8.0):
        now[0] = t
        meter.update(10)
    assert meter.items == 20
    assert meter.rate == pytest.approx(10.0)  # 20 items from t=6 to t=8

    now[0] = 13.0  # 4 s of evaluation, then one more 1 s step
    meter.exclude(4.0)
    meter.update(10)
    assert meter.rate == pytest.approx(10.0)

    now[0] = 20.0  # a final evaluation after the last step: nothing timed happened, the rate stays
    meter.exclude(7.0)
    assert meter.rate == pytest.approx(10.0)


def test_a_pause_during_warmup_is_not_counted_in_the_first_timed_step(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(monitor, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    meter = Throughput(warmup=1)
    now[0] = 1.0
    meter.update(10)  # warm-up
    now[0] = 4.0  # 2 s of evaluation, then a 1 s step
    meter.exclude(2.0)
    meter.update(10)
    assert meter.rate == pytest.approx(10.0)


def test_mfu():
    assert mfu(1e9, 100, 1e12) == pytest.approx(0.1)
    assert mfu(1e9, 100, 0) == 0.0


def test_resolve_run_dir_names_resumes_and_explains(tmp_path):
    assert resolve_run_dir("proj", tmp_path, "named") == tmp_path / "proj" / "named"
    fresh = resolve_run_dir("proj", tmp_path)
    assert fresh.is_dir() and fresh.name[:8].isdigit()  # a timestamp
    with pytest.raises(UserError, match="no run with a resume.pt"):
        resolve_run_dir("proj", tmp_path, resume=True)
    with pytest.raises(UserError, match="has no resume.pt"):
        resolve_run_dir("proj", tmp_path, "named", resume=True)
    (tmp_path / "proj" / "named" / "resume.pt").write_bytes(b"")
    assert resolve_run_dir("proj", tmp_path, resume=True) == tmp_path / "proj" / "named"


def test_resolve_run_dir_agrees_across_ranks(tmp_path):
    rank0, rank1 = run_distributed(in_process_group, resolve_run_dir, "proj", tmp_path)
    assert rank0 == rank1 and rank0.is_dir()


def test_one_cache_root_for_every_project(monkeypatch, tmp_path):
    monkeypatch.delenv("CAPSTONES_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir("cifar10") == tmp_path / "home" / ".cache" / "capstones" / "cifar10"
    monkeypatch.setenv("CAPSTONES_CACHE", str(tmp_path / "elsewhere"))
    assert cache_dir("detector", "shapes") == tmp_path / "elsewhere" / "detector" / "shapes"
    assert not (tmp_path / "elsewhere").exists()  # named, not created
