"""Model cards: the README.md of an exported model folder, in the Hugging Face Hub's format.

An exported folder travels without its run folder (uploaded to the Hub, copied to a server), so it has to say
itself what it is. The Hub reads a README.md that starts with YAML metadata (library, tags, datasets, licence, and
test metrics as `model-index` eval results, which the model page shows and searches), then Markdown for people:
the data, the exact training command, the results, the limits. `export` verbs write it from the run's own
config.json and metrics.json, so the card's numbers are the ones the run measured, never typed by hand. The
metadata is built with huggingface_hub's own ModelCardData / EvalResult / ModelCard, so what is written is what
`ModelCard.load` (and the Hub) parses back.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import typing
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .checkpoint import atomic_path
from .configs import WHERE_FIELDS

CARD_NAME = "README.md"


@dataclass(frozen=True)
class Result:
    """One measured metric, as a `model-index` entry holds it."""

    task: str
    """Hub task id: image-classification, object-detection, text-generation, ..."""
    dataset: str
    """Dataset id (a Hub id where the data has one, else a short slug)."""
    dataset_name: str
    """The dataset as a reader knows it: "scikit-learn digits"."""
    metric: str
    """Metric id: accuracy, map, perplexity, ..."""
    value: float
    metric_name: str | None = None
    """The metric as a reader knows it: "test accuracy"."""
    split: str = "test"


def write_model_card(
    folder: str | os.PathLike,
    *,
    title: str,
    library_name: str,
    tags: Sequence[str],
    datasets: Sequence[str],
    license: str,
    results: Sequence[Result],
    summary: str,
    data: str,
    command: str,
    limits: str,
    pipeline_tag: str | None = None,
    settings_file: str | None = "config.json",
    base_model: str | None = None,
) -> Path:
    """Write FOLDER/README.md atomically and return its path. `summary`, `data` and `limits` are Markdown;
    `command` is the shell command that trained the model; `settings_file` names the file beside the card that
    holds every setting of the run (None: there is none); `base_model` is the Hub id of the model this one was
    fine-tuned from, which the Hub links to (None: trained from scratch, or from a model that is not on the Hub)."""
    metadata = ModelCardData(
        library_name=library_name,
        pipeline_tag=pipeline_tag,
        base_model=base_model,
        tags=list(tags),
        datasets=list(datasets),
        license=license,
        metrics=sorted({r.metric for r in results}) or None,
        model_name=title if results else None,
        eval_results=[_eval_result(r) for r in results] or None,
    )
    body = _body(title, summary, data, command, results, limits, settings_file)
    card = ModelCard(f"---\n{metadata.to_yaml()}\n---\n\n{body}")  # parsed here, as a reader will parse it
    path = Path(folder) / CARD_NAME
    with atomic_path(path) as tmp:
        tmp.write_text(str(card), encoding="utf-8", newline="")  # "\n" everywhere: the Hub's own line ending
    return path


def _eval_result(result: Result) -> EvalResult:
    return EvalResult(
        task_type=result.task,
        dataset_type=result.dataset,
        dataset_name=result.dataset_name,
        dataset_split=result.split,
        metric_type=result.metric,
        metric_name=result.metric_name,
        metric_value=result.value,
    )


def _body(
    title: str, summary: str, data: str, command: str, results: Sequence[Result], limits: str, settings_file: str | None
) -> str:
    settings = f"\n`{settings_file}` beside this card holds every setting of the run.\n" if settings_file else ""
    return (
        f"# {title}\n\n{summary.strip()}\n\n"
        f"## Data\n\n{data.strip()}\n\n"
        f"## Training\n\n```bash\n{command}\n```\n{settings}\n"
        f"## Results\n\n{_results_table(results)}\n\n"
        f"## Limits\n\n{limits.strip()}\n"
    )


def _results_table(results: Sequence[Result]) -> str:
    if not results:
        return "The run recorded no test metrics (its metrics.json is missing: it stopped before the test)."
    rows = [f"| {r.metric_name or r.metric} | {r.dataset_name} | {r.split} | {r.value:.4f} |" for r in results]
    return "\n".join(["| metric | data | split | value |", "|---|---|---|---:|", *rows])


def train_command(
    prog: str,
    config: Mapping[str, Any],
    presets: Mapping[str, Any],
    default_preset: str,
    ignore: Collection[str] = (*WHERE_FIELDS, "progress"),
    processes: int = 1,
) -> str:
    """The `uv run PROG train ...` that rebuilds a run's config.json: the closest preset, then a flag for each
    field that differs from it. `ignore` lists the fields that cannot change the result (where the run is
    written, logging). A run of several processes is started by torchrun, as the projects' READMEs do."""

    def differences(preset: Any) -> dict[str, Any]:
        defaults = dataclasses.asdict(preset)
        return {
            name: value
            for name, value in config.items()
            if name in defaults and name not in ignore and _same_json(value) != _same_json(defaults[name])
        }

    # fewest differing fields; on a tie the default preset, which needs no --preset flag
    name = min(presets, key=lambda p: (len(differences(presets[p])), p != default_preset))
    hints = typing.get_type_hints(type(presets[name]))
    launcher = ["torchrun", "--nproc-per-node", str(processes), "-m", f"{prog}.cli"] if processes > 1 else [prog]
    words = ["uv", "run", *launcher, "train"] + ([] if name == default_preset else ["--preset", name])
    for field, value in differences(presets[name]).items():
        words += _flag(field, value, is_switch=hints[field] is bool)
    return shlex.join(words)


def _same_json(value: Any) -> Any:
    """A field's value as config.json holds it (tuples as lists, paths as strings), for comparison."""
    if isinstance(value, tuple | list):
        return [_same_json(v) for v in value]
    return str(value) if isinstance(value, os.PathLike) else value


def _flag(field: str, value: Any, is_switch: bool) -> list[str]:
    """tyro's spelling of one field: --flag / --no-flag for a plain bool, one word per item for sequences."""
    flag = "--" + field.replace("_", "-")
    if is_switch:
        return [flag if value else "--no-" + flag[2:]]
    if isinstance(value, list | tuple):
        return [flag, *map(str, value)]
    return [flag, "None" if value is None else str(value)]
