"""The shared command-line contract: verbs, presets + overrides, one-line user errors."""

import dataclasses

import pytest

from dlshared.cli import Command, UserError, run_cli


@dataclasses.dataclass
class Cfg:
    lr: float = 0.1
    """Learning rate of the optimiser."""
    steps: int = 10
    """Number of optimisation steps."""


def _fail(cfg: Cfg) -> None:
    raise UserError(f"no data at {cfg.lr}")


COMMANDS = {
    "train": Command(lambda c: c, Cfg, "Train a model.", {"tiny": Cfg(steps=1), "quick": Cfg(steps=100)}, "quick"),
    "eval": Command(_fail, Cfg, "Evaluate a model."),
}


def run(*argv):
    return run_cli("proj", COMMANDS, list(argv))


def exit_code(*argv):
    with pytest.raises(SystemExit) as info:
        run(*argv)
    return info.value.code


def test_presets_and_overrides():
    assert run("train") == Cfg(steps=100)  # the default preset
    assert run("train", "--preset", "tiny") == Cfg(steps=1)
    assert run("train", "--lr", "0.5", "--preset=tiny") == Cfg(lr=0.5, steps=1)  # flags override preset fields


def test_unknown_verb_and_preset(capsys):
    assert exit_code("fit") == 2
    assert "unknown command 'fit'" in capsys.readouterr().err
    assert exit_code("train", "--preset", "huge") == 2
    assert "unknown preset 'huge'" in capsys.readouterr().err
    assert exit_code("train", "--preset") == 2
    assert exit_code("train", "--steps", "many") == 2
    assert exit_code() == 2  # no verb: usage, and a failure


def test_user_error_is_one_line(capsys):
    assert exit_code("eval") == 2
    captured = capsys.readouterr()
    assert captured.err == "proj eval: error: no data at 0.1\n"
    assert "Traceback" not in captured.out


def test_help(capsys):
    assert exit_code("--help") == 0
    out = capsys.readouterr().out
    assert "train" in out and "Evaluate a model." in out
    assert exit_code("train", "--help") == 0
    out = capsys.readouterr().out
    assert "--lr" in out and "Learning rate of the optimiser." in out and "tiny" in out


def test_checks_declared_with_the_fields_refuse_bad_values():
    from dlshared.cli import Fraction, Positive, field_checks, validate

    @dataclasses.dataclass
    class Checked:
        epochs: Positive = 3
        widths: tuple[Positive, ...] = (8, 16)
        val_fraction: Fraction = 0.1
        limit: Positive | None = None
        name: str = "x"

    assert set(field_checks(Checked)) == {"epochs", "widths", "val_fraction", "limit"}
    assert validate(Checked()) == Checked()
    for bad, message in [
        (Checked(epochs=0), "--epochs 0: must be at least 1"),
        (Checked(widths=(8, 0)), "--widths (8, 0): must be at least 1"),
        (Checked(val_fraction=1.5), "--val-fraction 1.5: must be between 0 and 1"),
        (Checked(limit=-2), "--limit -2: must be at least 1"),
    ]:
        with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
            validate(bad)
