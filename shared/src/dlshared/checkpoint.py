"""Atomic checkpoint files: model weights as safetensors, resume state as a weights-only torch file.

Every write goes to a temporary file in the same folder and is renamed over the target, so a run killed at any
moment leaves either the previous file or the new one, never half of one. Loading never unpickles code:
safetensors for weights, `torch.load(weights_only=True)` for optimizer/scheduler/RNG state.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

WEIGHTS_NAME = "model.safetensors"
RESUME_NAME = "resume.pt"

# mkstemp creates files readable by their owner only; give checkpoints the permissions any other file gets.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success, fsync it, rename it onto `path` and fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_path(path.parent)  # the rename itself must reach the disk, or a power cut can undo it
    finally:
        tmp.unlink(missing_ok=True)


def fsync_path(path: Path) -> None:
    """Flush a file, or a folder's entries (its renames), to the disk."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms (Windows) cannot open a folder; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n", encoding="utf-8")


def load_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_json_object(path: str | os.PathLike) -> dict:
    """A JSON object a command wrote (config.json, card.json, metrics.json); a missing, damaged or foreign file
    is a one-line UserError naming it."""
    from .cli import UserError, short_reason

    try:
        value = load_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(
            f"{path} cannot be read as JSON ({short_reason(err)}); copy the folder again or retrain"
        ) from None
    if not isinstance(value, dict):
        raise UserError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def save_weights(model: torch.nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Save a module's state dict as safetensors (tensors made contiguous, shared storage cloned)."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def load_weights(model: torch.nn.Module, path: str | os.PathLike, strict: bool = True) -> torch.nn.Module:
    """Load safetensors weights into `model` (on the model's device). A truncated or foreign file, or weights of
    another architecture, end as a one-line UserError naming the file."""
    from .cli import UserError, short_reason

    device = next(itertools.chain(model.parameters(), model.buffers()), torch.empty(0)).device
    try:
        state = load_file(str(path), device=str(device))
    except Exception as err:  # safetensors raises its own error types for truncated or foreign files
        raise UserError(
            f"{path} is damaged or not a safetensors file ({short_reason(err)}); retrain or copy it again"
        ) from None
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as err:  # missing/unexpected keys or another shape: name the first problem
        problem = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), short_reason(err))
        raise UserError(
            f"{path} holds weights of another model ({problem[:200]}); keep a run's files together"
        ) from None
    return model


def save_resume_state(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Save what resuming needs (model, optimizer, scheduler, counters, RNG) in one atomic file.

    One file, so the pieces can never come from two different steps.
    """
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_resume_state(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    return torch.load(path, map_location=map_location, weights_only=True)


def training_state(model: torch.nn.Module, optimizer: Any, scheduler: Any = None, **progress: Any) -> dict[str, Any]:
    """What resuming needs, as one dict for `save_resume_state`: model, optimizer and scheduler state, every RNG,
    and the loop's counters (`progress`: epoch, step, history, ...)."""
    from .seed import capture_rng_state

    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": capture_rng_state()}
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    return {**state, **progress}


def restore_training_state(
    path: str | os.PathLike, model: torch.nn.Module, optimizer: Any, scheduler: Any = None
) -> dict[str, Any]:
    """Inverse of `training_state` read from `path`: loads model, optimizer, scheduler and RNGs; returns the
    counters that were saved with them."""
    from .seed import restore_rng_state

    state = load_resume_state(path)
    model.load_state_dict(state.pop("model"))
    optimizer.load_state_dict(state.pop("optimizer"))
    if scheduler is not None:
        scheduler.load_state_dict(state.pop("scheduler"))
    restore_rng_state(state.pop("rng"))
    return state
