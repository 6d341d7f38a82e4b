"""Model cards: what write_model_card writes is what huggingface_hub parses back, and train_command rebuilds the
command line of a run's config."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import tyro
from huggingface_hub import ModelCard

from dlshared.modelcard import Result, train_command, write_model_card


def write_example(folder: Path, results: list[Result]) -> Path:
    return write_model_card(
        folder,
        title="toy: a net on digits",
        library_name="onnx",
        pipeline_tag="image-classification",
        tags=["pytorch-capstones", "image-classification", "onnx"],
        datasets=["sklearn-digits"],
        license="mit",
        results=results,
        summary="A toy classifier.",
        data="The scikit-learn digits, split seed 0.",
        command="uv run toy train --epochs 3",
        limits="It knows 10 classes and no others.",
    )


def test_the_card_parses_back_with_its_metadata_and_sections(tmp_path):
    accuracy = Result("image-classification", "sklearn-digits", "scikit-learn digits", "accuracy", 0.9861)
    path = write_example(tmp_path, [accuracy])
    assert path == tmp_path / "README.md" and not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left
    card = ModelCard.load(path)
    assert card.data.library_name == "onnx" and card.data.pipeline_tag == "image-classification"
    assert card.data.tags == ["pytorch-capstones", "image-classification", "onnx"]
    assert card.data.datasets == ["sklearn-digits"] and card.data.license == "mit"
    assert card.data.metrics == ["accuracy"] and card.data.model_name == "toy: a net on digits"
    (result,) = card.data.eval_results
    assert (result.task_type, result.dataset_type, result.dataset_name) == (
        "image-classification",
        "sklearn-digits",
        "scikit-learn digits",
    )
    assert (result.metric_type, result.metric_value, result.dataset_split) == ("accuracy", 0.9861, "test")
    text = card.text
    sections = ["# toy: a net on digits", "## Data", "## Training", "## Results", "## Limits"]
    assert [text.index(s) for s in sections] == sorted(text.index(s) for s in sections)  # all there, in order
    assert "```bash\nuv run toy train --epochs 3\n```" in text
    assert "| accuracy | scikit-learn digits | test | 0.9861 |" in text
    assert "`config.json` beside this card holds every setting" in text


def test_a_run_without_metrics_gets_a_card_that_says_so(tmp_path):
    card = ModelCard.load(write_example(tmp_path, []))
    assert card.data.eval_results is None and "model-index" not in card.content
    assert "recorded no test metrics" in card.text


def test_writing_again_replaces_the_card(tmp_path):
    write_example(tmp_path, [Result("image-classification", "d", "d", "accuracy", 0.5)])
    write_example(tmp_path, [Result("image-classification", "d", "d", "accuracy", 0.75)])
    (result,) = ModelCard.load(tmp_path / "README.md").data.eval_results
    assert result.metric_value == 0.75


@dataclasses.dataclass
class ToyConfig:
    data: Path | None = None
    widths: tuple[int, ...] = (32, 64)
    epochs: int = 15
    lr: float = 4e-3
    augment: bool = True
    limit: int | None = None
    out: Path = Path("runs")
    name: str | None = None
    progress: bool = True


PRESETS = {"tiny": ToyConfig(widths=(8,), epochs=2, progress=False), "quick": ToyConfig()}


def as_saved(cfg: ToyConfig) -> dict:
    """The config as config.json holds it: paths as strings, tuples as lists."""
    return {k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v for k, v in vars(cfg).items()}


def parse_train_command(command: str) -> ToyConfig:
    """What the train verb would run: tyro parses the flags on top of the preset, as dlshared.cli does."""
    words = shlex.split(command)[shlex.split(command).index("train") + 1 :]
    preset = "quick"
    if words[:1] == ["--preset"]:
        preset, words = words[1], words[2:]
    return tyro.cli(ToyConfig, args=words, default=PRESETS[preset])


def test_train_command_parses_back_to_the_runs_config():
    where = {"out": Path("/tmp/x"), "name": "run", "progress": False}  # ignored: they change nothing trained
    for cfg in (
        ToyConfig(**where),
        dataclasses.replace(PRESETS["tiny"], epochs=3, **where),
        ToyConfig(data=Path("my data"), widths=(16, 32), lr=0.01, augment=False, limit=7, **where),
        dataclasses.replace(PRESETS["tiny"], widths=(8, 8, 8), limit=None, augment=True, **where),
    ):
        parsed = parse_train_command(train_command("toy", as_saved(cfg), PRESETS, "quick"))
        assert dataclasses.replace(parsed, **where) == cfg


def test_train_command_starts_from_the_closest_preset_and_names_each_difference():
    def command(cfg: ToyConfig, processes: int = 1) -> str:
        return train_command("toy", as_saved(cfg), PRESETS, "quick", processes=processes)

    assert command(ToyConfig(out=Path("/tmp/x"), name="run", progress=False)) == "uv run toy train"
    assert command(dataclasses.replace(PRESETS["tiny"], epochs=3)) == "uv run toy train --preset tiny --epochs 3"
    changed = ToyConfig(data=Path("my data"), widths=(16, 32), lr=0.01, augment=False, limit=None)
    assert command(changed) == "uv run toy train --data 'my data' --widths 16 32 --lr 0.01 --no-augment"
    assert command(ToyConfig(limit=5), processes=2) == "uv run torchrun --nproc-per-node 2 -m toy.cli train --limit 5"
