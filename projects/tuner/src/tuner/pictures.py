"""What a run leaves to look at: RUN/curves.png from `train` (each stage's loss, and DPO's reward margin and
accuracy, against its steps) and answers.png from `eval` (held-out prompts, the base's answer beside the tuned
model's, graded by task.grade where the task has a checker).

The stages keep their curves small in metrics.json: pretraining's loss averaged over every `every` steps, and the
training lines of each trl Trainer's `state.log_history` (logging_steps apart, 20 a stage).
"""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

from dlshared.monitor import RunLogger
from dlshared.pictures import curves_figure, pyplot, save_figures

HISTORIES = ("pretrain_history", "sft_history", "dpo_history")
"""The metrics.json keys the stages write their curves under (a stage run again replaces its own)."""
SFT_NAMES = {"loss": "sft_loss"}
DPO_NAMES = {"loss": "dpo_loss", "rewards/margins": "reward_margin", "rewards/accuracies": "reward_accuracy"}
"""trl's names for what it logs (DPO: stages.HandWrittenDPOTrainer.record) -> the names curves.png draws."""


def window_means(losses: list[float], every: int, key: str) -> list[dict]:
    """[{"step", key}]: the mean loss of each `every` steps, at the window's last step (1-based)."""
    starts = range(0, len(losses), every)
    means = [sum(losses[s : s + every]) / len(losses[s : s + every]) for s in starts]
    return [{"step": min(s + every, len(losses)), key: round(m, 4)} for s, m in zip(starts, means, strict=True)]


def trainer_history(log_history: list[dict], names: dict[str, str]) -> list[dict]:
    """The training lines of a trl Trainer's log_history (those with "loss"; not the final summary), renamed."""
    lines = [h for h in log_history if "loss" in h and "step" in h]
    return [{"step": h["step"], **{new: round(h[old], 4) for old, new in names.items() if old in h}} for h in lines]


def curves(metrics: dict, dpo_sft_weight: float):
    """One panel a stage the run holds curves for: pretraining loss, SFT loss, DPO loss with its reward margin
    and accuracy (the DPO loss includes RPO's SFT term when its weight is above 0)."""
    records = [record for key in HISTORIES for record in metrics.get(key, [])]
    panels = {
        "pretraining loss (nats per token)": ["pretrain_loss"],
        "SFT loss (answer tokens)": ["sft_loss"],
        "DPO: loss, reward margin, accuracy": ["dpo_loss", "reward_margin", "reward_accuracy"],
    }
    title = f"DPO loss = sigmoid loss + {dpo_sft_weight:g} x SFT term (RPO)" if dpo_sft_weight > 0 else None
    return curves_figure(records, panels, x="step", title=title)


def save_curves(run_dir: Path, metrics: dict, dpo_sft_weight: float) -> dict:
    """RUN/curves.png, and the same image in TensorBoard (RUN/logs/pictures); nothing when no stage kept a curve
    (a run trained before the stages kept them)."""
    if not any(metrics.get(key) for key in HISTORIES):
        print("curves.png: no stage of this run kept its curve; not drawn")
        return {}
    log = RunLogger(Path(run_dir) / "logs" / "pictures")
    try:
        return save_figures(run_dir, {"curves": curves(metrics, dpo_sft_weight)}, log=log)
    finally:
        log.close()


def answer_rows(run_dir: Path, cfg, data, n: int = 6, max_new_tokens: int = 24) -> tuple[list[str], list[dict]]:
    """(the two stages compared, rows) for the first `n` held-out prompts: the base and the last tuned model
    (DPO, else SFT), greedy as the task metric answers. A row: {"prompt", "reference", "answers": {stage: (text,
    (correct, formatted) or None)}}; the synthetic task is graded, a --data file's pairs show their chosen answer."""
    from .artifacts import load_stage, present
    from .evaluate import generate_answers
    from .task import grade

    stages = [stage for stage in present(run_dir, cfg) if stage != "none"]
    compared = [stages[0], stages[-1]]
    if data.eval_items:
        items = data.eval_items[:n]
        prompts, references = [p for p, _ in items], [expected for _, expected in items]
    else:
        pairs = data.heldout_pairs[:n]
        prompts, references = [p["prompt"] for p in pairs], [p["chosen"] for p in pairs]
    rows = [{"prompt": p, "reference": r, "answers": {}} for p, r in zip(prompts, references, strict=True)]
    for stage in compared:
        model, tokenizer = load_stage(run_dir, stage, cfg)
        for row, answer in zip(rows, generate_answers(model, tokenizer, prompts, max_new_tokens), strict=True):
            verdict = grade(answer, row["reference"]) if data.eval_items else None
            row["answers"][stage] = (answer, verdict)
        del model
    return compared, rows


COLOURS = {(True, True): "#d4efd4", (True, False): "#fbeec2", (False, True): "#f6d3d3", (False, False): "#f6d3d3"}
MARKS = {
    (True, True): "✓ right, formatted",
    (True, False): "✓ right sum, ✗ format",
    (False, True): "✗ wrong sum",
    (False, False): "✗ wrong sum",
}
"""(correct, formatted) -> the cell's colour and mark: green is what the task metric counts."""
NOTE = "green: right sum in the format (what the task metric counts), yellow: right sum, red: wrong sum"
WIDTHS = (34, 14, 30, 30)
"""Characters a column: prompt, expected answer, the base's answer, the tuned model's."""
FONT, LINE, PAD = 8.0, 10.0, 5.0
"""Points: the monospaced text, its line height and the padding of a cell (a character is 0.6 FONT wide)."""


def wrapped(text: str, width: int, max_lines: int = 6) -> list[str]:
    """Text as lines of at most `width` characters (its own newlines kept), cut with "..." after `max_lines`."""
    lines = [part for line in text.splitlines() or [""] for part in textwrap.wrap(line, width) or [""]]
    return lines if len(lines) <= max_lines else [*lines[: max_lines - 1], lines[max_lines - 1][: width - 3] + "..."]


def table_cells(compared: list[str], rows: list[dict], graded: bool) -> list[list[tuple[list[str], tuple | None]]]:
    """The table as text: a header, then a row a prompt; each cell is (its wrapped lines, its verdict or None)."""
    header = ["prompt", "expected sum" if graded else "chosen (data)", *(f"{stage} answer" for stage in compared)]
    table = [[(wrapped(name, width), None) for name, width in zip(header, WIDTHS, strict=True)]]
    for row in rows:
        cells = [
            (wrapped(row["prompt"].strip(), WIDTHS[0]), None),
            (wrapped(str(row["reference"]).strip(), WIDTHS[1]), None),
        ]
        for stage, width in zip(compared, WIDTHS[2:], strict=True):
            answer, verdict = row["answers"][stage]
            lines = wrapped(answer.strip() or "(no answer)", width)
            cells.append((lines + [MARKS[verdict]] if verdict is not None else lines, verdict))
        table.append(cells)
    return table


def answers_figure(compared: list[str], rows: list[dict], graded: bool):
    """The before/after table, drawn: a cell's height is its longest wrapped text; graded answers coloured."""
    plt = pyplot()
    table = table_cells(compared, rows, graded)
    edges = [0.0, *itertools.accumulate(width * 0.6 * FONT + 2 * PAD for width in WIDTHS)]
    heights = [max(len(lines) for lines, _ in cells) * LINE + 2 * PAD for cells in table]
    top = 2.2 * LINE  # the note above the table
    bottom = top + sum(heights)
    fig = plt.figure(figsize=(edges[-1] / 72, bottom / 72))  # 72 points an inch: one unit of the axes a point
    ax = fig.add_axes((0, 0, 1, 1), xlim=(0, edges[-1]), ylim=(bottom, 0))
    ax.axis("off")
    ax.text(PAD, 0.4 * LINE, NOTE if graded else "held-out prompts, greedy answers", fontsize=FONT, va="top")
    for r, (cells, height) in enumerate(zip(table, heights, strict=True)):
        for c, (lines, verdict) in enumerate(cells):
            colour = "#e8e8e8" if r == 0 else COLOURS.get(verdict, "white")
            ax.add_patch(plt.Rectangle((edges[c], top), edges[c + 1] - edges[c], height, fc=colour, ec="#999999"))
            text = "\n".join(lines)
            style = {"family": "DejaVu Sans Mono", "weight": "bold" if r == 0 else "normal", "va": "top"}
            ax.text(edges[c] + PAD, top + PAD, text, fontsize=FONT, linespacing=LINE / FONT, parse_math=False, **style)
        top += height
    return fig


def eval_pictures(run_dir: Path, cfg, data, folder: Path) -> dict:
    """answers.png in `folder` ({name: path}); nothing when the run holds no tuned model yet."""
    from .artifacts import present

    if len([stage for stage in present(run_dir, cfg) if stage != "none"]) < 2:
        print("eval pictures: the run holds no tuned model beside its base yet; answers.png not written")
        return {}
    if not data.eval_items and not data.heldout_pairs:
        print("eval pictures: no held-out prompts to answer; answers.png not written")
        return {}
    compared, rows = answer_rows(run_dir, cfg, data)
    Path(folder).mkdir(parents=True, exist_ok=True)
    return save_figures(folder, {"answers": answers_figure(compared, rows, graded=bool(data.eval_items))})
