"""`capstones sweep`: one training process per seed, the metrics summarised as mean ± std, resumable."""

import json
import statistics

import pytest

from dlshared.cli import UserError
from dlshared.fork import main
from dlshared.sweep import SweepConfig, default_name, lookup, sweep
from dlshared.testing import assert_one_line_error, bad_flag_cases

TOY_CLI = """
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
get = lambda flag: args[args.index(flag) + 1]
seed, run = int(get("--seed")), Path(get("--out")) / "toyproj" / get("--name")
run.mkdir(parents=True)
epochs = int(get("--epochs")) if "--epochs" in args else 1
metrics = {"accuracy": 0.9 + seed / 100, "eval": {"fid": 1.0 + seed}, "epochs": epochs, "run_dir": str(run)}
metrics["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")
(run / "metrics.json").write_text(json.dumps(metrics))
"""


@pytest.fixture
def toy_project(tmp_path, monkeypatch):
    package = tmp_path / "src" / "toyproj"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "cli.py").write_text(TOY_CLI, encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "src"))
    return tmp_path / "runs"


def test_sweep_runs_each_seed_and_reports_mean_and_std(toy_project):
    cfg = SweepConfig(
        "toyproj", seeds=(0, 1, 2), metrics=("accuracy", "eval.fid"), train_args="--epochs 3", out=toy_project
    )
    result = sweep(cfg)
    accuracy = result["metrics"]["accuracy"]
    assert accuracy["values"] == [0.9, 0.91, 0.92]
    assert accuracy["mean"] == pytest.approx(0.91) and accuracy["std"] == pytest.approx(
        statistics.stdev([0.9, 0.91, 0.92])
    )
    assert result["metrics"]["eval.fid"]["mean"] == pytest.approx(2.0)
    assert json.loads((toy_project / "toyproj" / "sweep-epochs-3.sweep.json").read_text(encoding="utf-8")) == result
    for seed in (0, 1, 2):
        assert (
            json.loads(
                (toy_project / "toyproj" / f"sweep-epochs-3-seed{seed}" / "metrics.json").read_text(encoding="utf-8")
            )["epochs"]
            == 3
        )


def test_omp_wait_policy_passive_reaches_every_seed_and_inherit_leaves_the_environment(toy_project, monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    passive = sweep(SweepConfig("toyproj", seeds=(0, 1), name="passive", omp_wait_policy="passive", out=toy_project))
    inherit = sweep(SweepConfig("toyproj", seeds=(0,), name="inherit", out=toy_project))
    policies = [
        json.loads((toy_project / "toyproj" / f"{n}" / "metrics.json").read_text(encoding="utf-8"))
        for n in ("passive-seed0", "passive-seed1", "inherit-seed0")
    ]
    assert [m["omp_wait_policy"] for m in policies] == ["PASSIVE", "PASSIVE", None]
    assert "omp_wait_policy" not in passive["metrics"] and inherit["metrics"]["accuracy"]["n"] == 1


def test_a_finished_seed_is_read_not_retrained(toy_project):
    sweep(SweepConfig("toyproj", seeds=(5,), out=toy_project))
    finished = toy_project / "toyproj" / "sweep-seed5" / "metrics.json"
    finished.write_text(
        json.dumps({"accuracy": 0.5}), encoding="utf-8"
    )  # what the sweep reads back, were it not retrained
    result = sweep(SweepConfig("toyproj", seeds=(5,), metrics=("accuracy",), out=toy_project))
    assert result["metrics"]["accuracy"]["values"] == [0.5] and "wall_seconds_per_run" not in result


def test_the_default_name_follows_the_train_args_so_two_recipes_never_share_runs(toy_project):
    three = sweep(SweepConfig("toyproj", seeds=(0,), metrics=("epochs",), train_args="--epochs 3", out=toy_project))
    five = sweep(SweepConfig("toyproj", seeds=(0,), metrics=("epochs",), train_args="--epochs 5", out=toy_project))
    assert three["metrics"]["epochs"]["values"] == [3.0] and five["metrics"]["epochs"]["values"] == [5.0]
    assert (toy_project / "toyproj" / "sweep-epochs-5-seed0").is_dir()
    assert default_name("") == "sweep" and default_name("--model mf") == "sweep-model-mf"
    long = default_name("--data " + "x" * 100)
    assert len(long) < 70 and long != default_name("--data " + "x" * 101)


def test_a_name_is_not_reused_with_other_flags(toy_project):
    sweep(SweepConfig("toyproj", seeds=(0,), train_args="--epochs 3", name="mine", out=toy_project))
    with pytest.raises(UserError, match="trained with --train-args='--epochs 3'"):
        sweep(SweepConfig("toyproj", seeds=(0,), train_args="--epochs 5", name="mine", out=toy_project))
    unrecorded = toy_project / "toyproj" / "other-seed0"  # e.g. made by `train --name other-seed0`
    unrecorded.mkdir(parents=True)
    (unrecorded / "metrics.json").write_text(json.dumps({"accuracy": 0.5}), encoding="utf-8")
    with pytest.raises(UserError, match="no sweep recorded"):
        sweep(SweepConfig("toyproj", seeds=(0,), name="other", out=toy_project))


def test_bad_sweeps_are_one_line_errors(toy_project):
    with pytest.raises(UserError, match="must not set --seed"):
        sweep(SweepConfig("toyproj", train_args="--seed 3", out=toy_project))
    with pytest.raises(UserError, match="not a number"):
        sweep(SweepConfig("toyproj", seeds=(0,), metrics=("run_dir",), out=toy_project))
    with pytest.raises(UserError, match="one folder, no path"):
        sweep(SweepConfig("../toyproj", out=toy_project))


def test_lookup_reads_nested_keys():
    assert lookup({"a": {"b": 2}}, "a.b") == 2 and lookup({"a": 1}, "a.b") is None


CASES = bad_flag_cases(SweepConfig)


@pytest.mark.parametrize("flag, value", CASES, ids=[f"{f}={v}" for f, v in CASES])
def test_every_bad_sweep_flag_is_one_line_and_creates_nothing(flag, value, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may appear here, ./runs included
    err = assert_one_line_error(main, ["sweep", "classifier", flag, value], capsys)
    assert flag in err and list(tmp_path.iterdir()) == []


def test_the_sweeps_numeric_flags_are_in_the_table():
    assert ("--seeds", "-1") in CASES
