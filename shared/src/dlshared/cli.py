"""The command-line contract every project shares: `<project> <verb> [--preset NAME] [--field value ...]`.

Each verb is a function taking one dataclass. tyro turns the dataclass into flags, with `--help` built from the
field docstrings; presets are ready-made instances of that dataclass whose fields any flag can override.
A verb that returns a dict has it printed as the last stdout line, one JSON object (by the main process only).
Errors a user can cause are raised as `UserError` and end as one line on stderr with exit code 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import itertools
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any, NoReturn, get_type_hints

import tyro


class UserError(Exception):
    """A problem the user can fix (bad path, bad value, wrong format): shown as one line, no traceback."""


@dataclasses.dataclass(frozen=True)
class Check:
    """A rule a config field's values must follow, declared with the field: `epochs: Positive = 15`.

    `validate(cfg)` applies every rule (to each element of a tuple field; `None` passes) and raises a one-line
    UserError naming the flag; `run_cli` and `dlshared.training.start_run` call it before anything is created.
    """

    ok: Callable[[Any], bool]
    rule: str
    bad_examples: tuple = ()
    """Values that break the rule: the table-driven bad-flag tests feed them to every CLI."""


Positive = Annotated[int, Check(lambda v: v >= 1, "at least 1", (0, -1))]
NonNegative = Annotated[int, Check(lambda v: v >= 0, "0 or more", (-1,))]
PositiveFloat = Annotated[float, Check(lambda v: v > 0, "greater than 0", (0.0, -1.0))]
NonNegativeFloat = Annotated[float, Check(lambda v: v >= 0, "0 or more", (-0.5,))]
Fraction = Annotated[float, Check(lambda v: 0 < v < 1, "between 0 and 1 (exclusive)", (0.0, 1.0, 1.5, -0.1))]
Probability = Annotated[float, Check(lambda v: 0 <= v <= 1, "between 0 and 1", (1.5, -0.1))]
BelowOne = Annotated[float, Check(lambda v: 0 <= v < 1, "0 or more and below 1", (1.0, -0.1))]
Port = Annotated[int, Check(lambda v: 1 <= v <= 65535, "a port number from 1 to 65535", (0, 65536))]


def short_reason(err: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, shortened: the reason part of a one-line error."""
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:limit]


def field_checks(config_type: type) -> dict[str, Check]:
    """The `Check` declared on each field of a dataclass type (through its Annotated type hint)."""
    hints = get_type_hints(config_type, include_extras=True)
    checks = {}
    for field in dataclasses.fields(config_type):
        found = [m for m in getattr(_strip_optional(hints[field.name]), "__metadata__", ()) if isinstance(m, Check)]
        if found:
            checks[field.name] = found[0]
    return checks


def _strip_optional(hint: Any) -> Any:
    """`Positive | None` and `tuple[Positive, ...]` -> the Annotated inside."""
    import typing

    args = [a for a in typing.get_args(hint) if a is not type(None) and a is not Ellipsis]
    if typing.get_origin(hint) is Annotated or not args:
        return hint
    return next((a for a in args if typing.get_origin(a) is Annotated), hint)


def validate(config: Any) -> Any:
    """Raise a UserError for the first field whose value breaks the Check declared on it; return `config`."""
    for name, check in field_checks(type(config)).items():
        value = getattr(config, name)
        for item in value if isinstance(value, tuple | list) else (value,):
            if item is not None and not check.ok(item):
                raise UserError(f"--{name.replace('_', '-')} {value}: must be {check.rule}")
    return config


@dataclasses.dataclass
class Command:
    fn: Callable[[Any], Any] | str
    """The verb, or "package.module:function", imported only when the verb runs (so `--help` stays fast)."""
    config: type
    help: str
    presets: dict[str, Any] | None = None
    default_preset: str | None = None
    hide: tuple[str, ...] = ("history",)
    """Keys of a returned dict left out of the printed JSON line (long per-epoch lists)."""
    resumes: str | None = None
    """For a training verb: its run-folder family (runs/<resumes>/NAME). With --resume the run then continues
    under its own config.json, with only the typed flags named in `may_change` on top (dlshared.configs)."""
    may_change: tuple[str, ...] = ()
    """Fields a resumed run may change (how it executes, not what it trains)."""
    resume_requires: str = "resume.pt"
    """--resume without --name continues the newest run holding this file (a project whose runs of other kinds
    also write resume.pt names the file only its own kind holds, as it does for start_run's `required`)."""

    def resolve(self) -> Callable[[Any], Any]:
        if callable(self.fn):
            return self.fn
        module, _, name = self.fn.partition(":")
        return getattr(importlib.import_module(module), name)


def run_cli(prog: str, commands: dict[str, Command], argv: Sequence[str] | None = None) -> Any:
    """Parse `argv` (default: sys.argv[1:]), run the chosen verb and return its result."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        _print_usage(prog, commands)
        raise SystemExit(0 if argv else 2)
    verb, rest = argv[0], argv[1:]
    if verb not in commands:
        _fail(prog, f"unknown command {verb!r}; choose one of: {', '.join(commands)}")
    command = commands[verb]
    description = command.help
    kwargs: dict[str, Any] = {}
    if command.presets:
        preset, rest = _pop_preset(f"{prog} {verb}", rest)
        preset = preset or command.default_preset or next(iter(command.presets))
        if preset not in command.presets:
            _fail(prog, f"unknown preset {preset!r}; choose one of: {', '.join(command.presets)}")
        kwargs["default"] = command.presets[preset]
        names = ", ".join(f"{name}{' (default)' if name == command.default_preset else ''}" for name in command.presets)
        description += f"\n\nPresets (--preset NAME, then any flag overrides its fields): {names}. Showing: {preset}."
    try:
        config = _parse(command.config, f"{prog} {verb}", description, rest, kwargs)
        if command.resumes and getattr(config, "resume", False):
            from .configs import resume_from_run, typed_fields

            typed = typed_fields(rest, command.config)
            config = resume_from_run(config, typed, command.resumes, command.may_change, command.resume_requires)
        result = command.resolve()(validate(config))
    except UserError as err:
        from .runs import discard_unfinished_runs

        discard_unfinished_runs()  # a run stopped before its first checkpoint leaves no folder behind
        _fail(f"{prog} {verb}", str(err))
    except KeyboardInterrupt:
        print(f"{prog} {verb}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    if isinstance(result, dict) and int(os.environ.get("RANK", "0")) == 0:  # under torchrun: rank 0 speaks
        print(json.dumps({k: v for k, v in result.items() if k not in command.hide}, default=str), flush=True)
    return result


def _parse(config_type: type, prog: str, description: str, args: list[str], kwargs: dict) -> Any:
    """tyro's parse, with its boxed multi-line error (a wrong type, an unknown flag) turned into one line."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return tyro.cli(config_type, prog=prog, description=description, args=args, **kwargs)
    except SystemExit as exit_:
        if exit_.code in (0, None):
            raise
        # the box: a title row, the message (wrapped over rows), a separator row, help text; keep the message
        text = re.sub(r"\x1b\[[0-9;]*m", "", captured.getvalue())  # colours, when rich thinks it has a terminal
        rows = [re.sub(r"^[\s│╭╰╮╯─|+-]+|[\s│╭╰╮╯─|+-]+$", "", line) for line in text.splitlines()]
        after_title = list(itertools.dropwhile(lambda row: not row, rows[1:]))
        body = list(itertools.takewhile(bool, after_title))
        message = " ".join(body) if body else text.strip().replace("\n", " ")[-300:]
        _fail(prog, f"{message or 'bad arguments'} (see --help)")


def _pop_preset(prog: str, args: list[str]) -> tuple[str | None, list[str]]:
    preset, rest, i = None, [], 0
    while i < len(args):
        arg = args[i]
        if arg == "--preset":
            if i + 1 >= len(args):
                _fail(prog, "--preset needs a value")
            preset, i = args[i + 1], i + 2
            continue
        if arg.startswith("--preset="):
            preset = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return preset, rest


def _print_usage(prog: str, commands: dict[str, Command]) -> None:
    print(f"usage: {prog} <command> [--preset NAME] [options]\n\ncommands:")
    width = max(map(len, commands))
    for name, command in commands.items():
        print(f"  {name.ljust(width)}  {command.help.splitlines()[0]}")
    print(f"\n`{prog} <command> --help` lists every option of a command.")


def _fail(prog: str, message: str) -> NoReturn:
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)
