"""Bad input from a user: every flag's bad values, folders that must not be written into, corrupt or foreign run
files, and what a run killed inside a stage leaves behind."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from dlshared.testing import assert_one_line_error, assert_output_folder_guarded, bad_flag_cases
from tuner.cli import main
from tuner.config import PRESETS, BenchArgs, DemoArgs, EvalArgs, ExportArgs, TrainConfig

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

VERBS = {"train": TrainConfig, "eval": EvalArgs, "export": ExportArgs, "bench": BenchArgs, "demo": DemoArgs}
CASES = [(verb, [flag, value], flag) for verb, config in VERBS.items() for flag, value in bad_flag_cases(config)]
CASES += [  # rules between fields, checked before any folder exists
    ("train", ["--n-head", "3"], "--n-head 3 does not divide --hidden 32"),
    ("train", ["--hidden", "30", "--n-head", "2"], "even head size"),
    ("train", ["--format-fractions", "1", "1", "1", "1.5"], "--format-fractions"),
    ("bench", ["--preset", "huge"], "unknown preset 'huge'"),
]


@pytest.mark.parametrize("verb, flags, message", CASES, ids=[f"{v}{' '.join(f)}" for v, f, _ in CASES])
def test_every_bad_flag_value_is_one_line_and_creates_nothing(verb, flags, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may appear here, ./runs included
    argv = [verb, *flags, *(["--preset", "tiny"] if verb == "train" else [])]
    assert message in assert_one_line_error(main, argv, capsys)
    assert list(tmp_path.iterdir()) == []


def test_export_never_writes_into_a_folder_it_did_not_create(tiny_run, tmp_path, capsys):
    # the run, and the base the adapter is merged into, are read: neither may be written over
    sources = [tiny_run["run_dir"], Path(tiny_run["run_dir"]) / "base"]
    assert_output_folder_guarded(main, ["export", "--ckpt", tiny_run["run_dir"]], sources, tmp_path, capsys)


def test_export_replaces_its_own_earlier_export_only_with_overwrite(tiny_run, tmp_path, capsys):
    out = tmp_path / "merged"
    args = ["export", "--ckpt", tiny_run["run_dir"], "--out", str(out), "--stage", "sft"]
    main(args)
    assert (out / "model.safetensors").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["merged"]
    capsys.readouterr()
    assert "add --overwrite" in assert_one_line_error(main, args, capsys)
    (out / "stale.txt").write_text("from the earlier export", encoding="utf-8")
    main([*args, "--overwrite"])
    assert (out / "model.safetensors").is_file() and not (out / "stale.txt").exists()  # replaced, not mixed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]  # no staging folder left beside it


# --- corrupt or foreign run files: one line naming the file, whatever verb reads it ---


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def other_rank(path: Path) -> None:
    """An adapter config that no longer matches its weights (rank 8 for rank-4 tensors)."""
    path.write_text(path.read_text(encoding="utf-8").replace('"r": 4', '"r": 8'), encoding="utf-8")


def not_a_model(base: Path) -> None:
    shutil.rmtree(base)
    base.mkdir()
    (base / "README.txt").write_text("a folder of notes, not a model", encoding="utf-8")


DAMAGE = {  # what is damaged -> (the file or folder the message must name, how)
    "truncated adapter": ("sft/adapter_model.safetensors", truncate),
    "adapter of another rank": ("sft/adapter_model.safetensors", other_rank, "sft/adapter_config.json"),
    "adapter config not JSON": ("sft/adapter_config.json", lambda p: p.write_text("{not json", encoding="utf-8")),
    "adapter config of another kind": (
        "sft/adapter_config.json",
        lambda p: p.write_text('{"peft_type": "NOPE"}', encoding="utf-8"),
    ),
    "truncated base weights": ("base/model.safetensors", truncate),
    "base that is not a model": ("base", not_a_model),
    "run config not JSON": ("config.json", lambda p: p.write_text("{not json", encoding="utf-8")),
}
VERB_ARGS = [["eval"], ["export", "--stage", "sft", "--out", "{tmp}/merged"], ["demo", "--port", "7999"]]


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("argv", VERB_ARGS, ids=[a[0] for a in VERB_ARGS])
def test_a_corrupt_or_foreign_run_file_is_named_in_one_line(tiny_run, tmp_path, argv, damage, capsys, monkeypatch):
    import dlshared.demo

    def launch(*args, **kwargs):
        raise AssertionError("the demo started on a damaged run")

    monkeypatch.setattr(dlshared.demo, "launch", launch)
    run = Path(shutil.copytree(tiny_run["run_dir"], tmp_path / "copy"))
    named, spoil, *spoiled = DAMAGE[damage]
    spoil(run / (spoiled[0] if spoiled else named))
    err = assert_one_line_error(main, [*[a.format(tmp=tmp_path) for a in argv], "--ckpt", str(run)], capsys)
    assert str(run / named) in err
    assert not (tmp_path / "merged").exists()


# --- a run killed inside a stage ---


def test_resume_cleans_what_a_killed_stage_left_and_redoes_that_stage(tiny_run, tmp_path):
    """A kill while DPO trained leaves a half-written .dpo.tmp (and no dpo/); a kill between the two renames that
    replace a finished stage leaves it set aside as .sft.old (and no sft/). --resume puts the finished stage back,
    deletes the half-written one and trains DPO again, to the numbers of an uninterrupted run."""
    from tuner.train import train

    run = Path(shutil.copytree(tiny_run["run_dir"], tmp_path / "tuner" / "killed"))
    shutil.rmtree(run / "dpo")
    (run / ".dpo.tmp").mkdir()
    (run / ".dpo.tmp" / "adapter_config.json").write_text('{"half": ', encoding="utf-8")
    sft = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (run / "sft").iterdir()}
    (run / "sft").rename(run / ".sft.old")
    resumed = train(replace(PRESETS["tiny"], out=tmp_path, name="killed", resume=True))
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []  # nothing orphaned
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (run / "sft").iterdir()} == sft  # not redone
    assert (run / "dpo" / "adapter_model.safetensors").is_file()
    for key in ("dpo_loss_last", "dpo/pref_acc", "dpo/dpo_loss", "sft_loss_last", "pretrain_loss_last"):
        assert resumed[key] == tiny_run[key], key
