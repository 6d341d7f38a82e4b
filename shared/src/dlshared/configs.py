"""Configs as data: a run's config.json read back into its dataclass, and the config `--resume` continues with.

A resumed run is the run it was: its own config.json decides the model, the data and the optimisation. Only the
flags typed on the command line now override it, and only those a project lists as safe to change (how long and
how the run executes: device, workers, logging, ...). A typed flag that would change what the run trains is
refused in one line, instead of failing later on a size mismatch or silently training something else.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .checkpoint import RESUME_NAME, read_json_object
from .cli import UserError, short_reason, validate
from .runs import check_name, latest_run

C = TypeVar("C")
WHERE_FIELDS = ("out", "name", "resume", "overwrite")
"""Where a run is and how it is started, not what it is: always as given now."""


def _convert(hint: Any, value: Any) -> Any:
    """A JSON value back to the field's type: lists to tuples, strings to paths (also inside `X | None`)."""
    if value is None:
        return None
    kinds = {typing.get_origin(a) or a for a in typing.get_args(hint)} | {typing.get_origin(hint) or hint}
    if tuple in kinds and isinstance(value, list):
        return tuple(value)
    if Path in kinds and isinstance(value, str):
        return Path(value)
    return value


def config_from_dict(config_type: type[C], values: dict) -> C:
    """Rebuild a config dataclass from its saved dict: keys of other versions are left out, missing ones take
    their defaults; the values are checked as flags are."""
    hints = typing.get_type_hints(config_type)
    fields = {f.name for f in dataclasses.fields(config_type) if f.init}
    kwargs = {name: _convert(hints[name], value) for name, value in values.items() if name in fields}
    return validate(config_type(**kwargs))


def read_config(path: Path, config_type: type[C]) -> C:
    """A run's config.json as `config_type`; a damaged or foreign file is one line naming it."""
    values = read_json_object(path)
    try:
        return config_from_dict(config_type, values)
    except (TypeError, ValueError, UserError) as err:
        raise UserError(
            f"{path} is not a {config_type.__name__} ({short_reason(err)}); retrain or fix the file"
        ) from None


def typed_fields(args: Sequence[str], config_type: type) -> frozenset[str]:
    """The fields of `config_type` whose flags appear in `args`: `--max-iters 9`, `--max-iters=9`, `--no-bias`."""
    names = {field.name for field in dataclasses.fields(config_type)}
    typed = set()
    for arg in args:
        if arg.startswith("--"):
            name = arg[2:].split("=", 1)[0].replace("-", "_")
            typed.add(name[3:] if name not in names and name.startswith("no_") else name)
    return frozenset(typed & names)


def resumed_config(saved: C, given: C, typed: Collection[str], may_change: Collection[str], run_dir: Path) -> C:
    """`saved` with the `typed` fields of `given` on top; a typed field outside `may_change` that differs from
    the saved value is a UserError."""
    for name in sorted(set(typed) - set(may_change) - set(WHERE_FIELDS)):
        if getattr(given, name) != getattr(saved, name):
            raise UserError(
                f"--{name.replace('_', '-')} {getattr(given, name)}: {run_dir} was trained with "
                f"{getattr(saved, name)}, and --resume continues a run as it was configured; "
                "leave the flag out, or start a new run (another --name) to change it"
            )
    overrides = {name: getattr(given, name) for name in (set(typed) & set(may_change)) | set(WHERE_FIELDS)}
    return dataclasses.replace(saved, **overrides)


def resume_from_run(
    given: C, typed: Collection[str], project: str, may_change: Collection[str], required: str = RESUME_NAME
) -> C:
    """The config `train --resume` continues with: the run's own config.json (the run named by --name, or the
    newest one holding `required`), with the `typed` flags that `may_change` on top. With nothing to resume the
    given config is returned unchanged, and the training verb reports that in one line."""
    if given.name is not None:
        folder = Path(given.out) / project / check_name(given.name)
    else:
        folder = latest_run(project, given.out, required=required)
    if folder is None or not (folder / "config.json").is_file():
        return given
    saved = read_config(folder / "config.json", type(given))
    return dataclasses.replace(resumed_config(saved, given, typed, may_change, folder), name=folder.name)
