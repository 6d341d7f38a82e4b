"""Bad input from a user: every flag's bad values, folders that must not be written into, corrupt or foreign run
files; each ends in one line on stderr, exit code 2, and nothing created or overwritten."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dlshared.testing import assert_one_line_error, assert_output_folder_guarded, bad_flag_cases
from tinygpt.cli import main
from tinygpt.config import BenchArgs, DemoArgs, EvalArgs, ExportArgs, GenerateArgs, TrainConfig

VERBS = {
    "train": TrainConfig,
    "eval": EvalArgs,
    "generate": GenerateArgs,
    "export": ExportArgs,
    "bench": BenchArgs,
    "demo": DemoArgs,
}
CASES = [(verb, [flag, value], flag) for verb, config in VERBS.items() for flag, value in bad_flag_cases(config)]
CASES += [(verb, ["--device", "tpu"], "--device tpu") for verb in VERBS]
CASES += [  # rules between fields, checked before any folder exists
    ("train", ["--n-head", "5"], "--n-head 5 does not divide --n-embd 32"),
    ("train", ["--arch", "llama", "--n-embd", "30"], "must be even"),
    ("train", ["--tokenizer", "bpe", "--vocab-size", "100"], "--vocab-size 100"),
]


@pytest.mark.parametrize("verb, flags, message", CASES, ids=[f"{v}{' '.join(f)}" for v, f, _ in CASES])
def test_every_bad_flag_value_is_one_line_and_creates_nothing(verb, flags, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may appear here, ./runs included
    argv = [verb, *flags, *(["--preset", "tiny"] if verb == "train" else [])]
    assert message in assert_one_line_error(main, argv, capsys)
    assert list(tmp_path.iterdir()) == []


def test_export_never_writes_into_a_folder_it_did_not_create(tiny_run, tmp_path, capsys):
    assert_output_folder_guarded(
        main, ["export", "--ckpt", tiny_run["run_dir"]], [tiny_run["run_dir"]], tmp_path, capsys
    )


def test_export_replaces_its_own_earlier_export_only_with_overwrite(tiny_run, tmp_path, capsys):
    out = tmp_path / "hf"
    args = ["export", "--ckpt", tiny_run["run_dir"], "--out", str(out)]
    main(args)
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]  # no staging folder left beside it
    capsys.readouterr()
    assert "add --overwrite" in assert_one_line_error(main, args, capsys)
    (out / "stale.txt").write_text("from the earlier export", encoding="utf-8")
    main([*args, "--overwrite"])
    assert (out / "model.safetensors").is_file() and not (out / "stale.txt").exists()  # replaced, not mixed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


# --- corrupt or foreign run files: one line naming the file, whatever verb reads it ---


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    """A copy of the tiny run that a test may damage."""
    return Path(shutil.copytree(tiny_run["run_dir"], tmp_path / "tinygpt" / "copy"))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def foreign_weights(path: Path) -> None:
    """Weights of a model of another size (a file copied from another run)."""
    from dlshared.checkpoint import save_weights
    from tinygpt.model import GPT, GPTConfig

    save_weights(GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16, arch="llama")), path)


DAMAGE = {
    "truncated weights": ("model.safetensors", truncate),
    "weights of another model": ("model.safetensors", foreign_weights),
    "model config not JSON": ("model_config.json", lambda p: p.write_text("{not json", encoding="utf-8")),
    "model config of another kind": (
        "model_config.json",
        lambda p: p.write_text('{"n_layer": 2, "layers": 3}', encoding="utf-8"),
    ),
    "tokenizer garbage": ("tokenizer.json", lambda p: p.write_bytes(b"\x00\xffgarbage" * 50)),
}
LOADERS = [
    ["eval", "--max-windows", "2"],
    ["generate", "--max-new-tokens", "2"],
    ["export", "--out", "{tmp}/hf"],
    ["demo", "--port", "7999"],  # fails while loading, before any server starts
]


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("argv", LOADERS, ids=[a[0] for a in LOADERS])
def test_a_corrupt_or_foreign_run_file_is_named_in_one_line(run_copy, tmp_path, argv, damage, capsys):
    name, spoil = DAMAGE[damage]
    spoil(run_copy / name)
    argv = [a.format(tmp=tmp_path) for a in argv]
    err = assert_one_line_error(main, [*argv, "--ckpt", str(run_copy)], capsys)
    assert str(run_copy / name) in err
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("content", ["[1, 2]", "{broken", '{"n_layer": "two"}'])
def test_eval_names_a_bad_config_json(run_copy, content, capsys):
    (run_copy / "config.json").write_text(content, encoding="utf-8")
    err = assert_one_line_error(main, ["eval", "--ckpt", str(run_copy)], capsys)
    assert str(run_copy / "config.json") in err


def test_resume_from_a_truncated_resume_file_is_named_in_one_line(run_copy, capsys):
    truncate(run_copy / "resume.pt")
    argv = ["train", "--out", str(run_copy.parents[1]), "--name", "copy", "--resume", "--max-iters", "50"]
    err = assert_one_line_error(main, argv, capsys)
    assert str(run_copy / "resume.pt") in err and "start a fresh run" in err
    assert (run_copy / "model.safetensors").is_file()  # what the run had is kept
