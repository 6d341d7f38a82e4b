"""Reading the files of a run a user may have damaged, moved or swapped: a truncated safetensors file, a JSON file
that is not JSON, another model's weights. Each ends as one line naming the file and what to do (a UserError),
never as a traceback from deep inside safetensors or diffusers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from dlshared.cli import UserError

RETRAIN = "train the run again (or point --ckpt at another run)"


def read_json(path: Path, what: str = "file") -> dict[str, Any]:
    """The JSON object in `path`, or a UserError naming the file when it is missing, unreadable or not an object."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: missing; {RETRAIN}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: not a readable JSON {what} ({_short(err)}); {RETRAIN}") from None
    if not isinstance(value, dict):
        raise UserError(f"{path}: not a JSON {what} (a {type(value).__name__}, not an object); {RETRAIN}")
    return value


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in a safetensors file, read from its header (no weights are loaded); a
    truncated or foreign file is a UserError naming it."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: missing; {RETRAIN}")
    try:
        with safe_open(str(path), framework="pt") as f:  # checks that the header covers the whole file
            names = list(f.keys())  # a safe_open handle is not a dict: it cannot be iterated
            return {name: tuple(f.get_slice(name).get_shape()) for name in names}
    except Exception as err:  # SafetensorError and friends: the file is cut short or not safetensors at all
        raise UserError(f"{path}: not a complete safetensors file ({_short(err)}); {RETRAIN}") from None


def check_weights_fit(path: Path, model: torch.nn.Module, what: str) -> None:
    """A UserError naming `path` unless it holds exactly the tensors of `model` (names and shapes): weights of
    another model, or of another size of this one, are refused before anything is loaded."""
    found = tensor_shapes(path)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    if found == expected:
        return
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    resized = sorted(k for k in set(found) & set(expected) if found[k] != expected[k])
    detail = f"{len(missing)} tensors missing, {len(unexpected)} unexpected, {len(resized)} of another shape"
    example = (resized or missing or unexpected)[0]
    raise UserError(f"{path}: not the weights of {what} ({detail}, e.g. {example}); {RETRAIN}")


def load_checked_weights(model: torch.nn.Module, path: Path, what: str) -> torch.nn.Module:
    """safetensors weights into `model`, after `check_weights_fit`."""
    from dlshared.checkpoint import load_weights

    check_weights_fit(path, model, what)
    return load_weights(model, path)


def _short(err: Exception) -> str:
    return " ".join(str(err).split())[:160] or type(err).__name__
