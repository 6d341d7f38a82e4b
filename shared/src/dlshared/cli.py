"""The command-line contract every project shares: `<project> <verb> [--preset NAME] [--field value ...]`.

Each verb is a function taking one dataclass. tyro turns the dataclass into flags, with `--help` built from the
field docstrings; presets are ready-made instances of that dataclass whose fields any flag can override.
Errors a user can cause are raised as `UserError` and end as one line on stderr with exit code 2.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import tyro


class UserError(Exception):
    """A problem the user can fix (bad path, bad value, wrong format): shown as one line, no traceback."""


@dataclasses.dataclass
class Command:
    fn: Callable[[Any], Any]
    config: type
    help: str
    presets: dict[str, Any] | None = None
    default_preset: str | None = None


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
        names = ", ".join(
            f"{name}{' (default)' if name == command.default_preset else ''}" for name in command.presets
        )
        description += (
            f"\n\nPresets (--preset NAME, then any flag overrides its fields): {names}. Showing: {preset}."
        )
    try:
        config = tyro.cli(command.config, prog=f"{prog} {verb}", description=description, args=rest, **kwargs)
        return command.fn(config)
    except UserError as err:
        _fail(f"{prog} {verb}", str(err))
    except KeyboardInterrupt:
        print(f"{prog} {verb}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


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
