"""The Gradio demo, two tabs.

Papers: pick a paper of the citation graph -> its predicted and true subject, its neighbours (what message
passing read), and the 2-D map of the learned node representations with the paper marked.
Movies: pick a user, or a few movies you like -> the top 20 with titles, each with the liked movie it is
nearest to ("because you liked ..."), answered from an export of a recommend run (serve_recs.py).

`build_demo(run, recs)` only builds the app; `graph demo` launches it (dlshared.demo.launch, 127.0.0.1). A paper
number outside the graph, an unknown user, an empty selection: a message in the page, not a trace.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import torch
from safetensors.torch import load_file

from dlshared.checkpoint import read_json_object
from dlshared.cli import UserError
from dlshared.display import markdown_text

from .artifacts import NodeRun
from .evaluate import embedding_map

MAX_NEIGHBOURS = 25


class Explorer:
    """What the page shows, computed once per model: predictions and the 2-D map of every node."""

    def __init__(self, run: NodeRun):
        graph = run.data.graph
        self.run, self.classes = run, run.data.classes
        with torch.no_grad():
            self.probabilities = run.model(graph.x, graph.edge_index).softmax(dim=1).cpu()  # [N, classes]
        self.map = embedding_map(run.model, graph).cpu()  # [N, 2]
        self.labels = graph.y.cpu()
        self.edge_index = graph.edge_index.cpu()
        self.split = {name: getattr(graph, f"{name}_mask").cpu() for name in ("train", "val", "test")}

    @property
    def num_nodes(self) -> int:
        return len(self.labels)

    def check(self, node) -> int:
        if node is None or str(node).strip() == "":
            raise gr.Error("Enter a paper's number.")
        try:
            number = float(node)
        except (TypeError, ValueError):
            raise gr.Error(f"{markdown_text(str(node))[:40]} is not a number.") from None
        if number != int(number) or not 0 <= number < self.num_nodes:
            raise gr.Error(f"Papers are numbered 0 to {self.num_nodes - 1}.")
        return int(number)

    def describe(self, node) -> tuple[str, object]:
        node = self.check(node)
        top = self.probabilities[node].topk(3)
        truth = self.classes[int(self.labels[node])]
        split = next((name for name, mask in self.split.items() if mask[node]), "unlabelled")
        neighbours = self.edge_index[0][self.edge_index[1] == node].tolist()
        lines = [
            f"### Paper {node} ({split} split)",
            f"**Predicted:** {self.classes[int(top.indices[0])]} ({float(top.values[0]):.0%})  ",
            f"**True subject:** {truth}",
            "",
            "| next guesses | probability |",
            "|---|---|",
            *[
                f"| {self.classes[int(i)]} | {float(p):.1%} |"
                for i, p in zip(top.indices[1:], top.values[1:], strict=True)
            ],
            "",
            f"**{len(neighbours)} neighbours** (cited or citing; their subjects are what message passing averaged):",
            ", ".join(f"{n} ({self.classes[int(self.labels[n])]})" for n in neighbours[:MAX_NEIGHBOURS])
            + (" ..." if len(neighbours) > MAX_NEIGHBOURS else ""),
        ]
        return "\n".join(lines), self.figure(node, neighbours)

    def figure(self, node: int, neighbours: list[int]):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4.6))
        for c, name in enumerate(self.classes):
            points = self.map[self.labels == c]
            ax.scatter(points[:, 0], points[:, 1], s=3, alpha=0.5, label=name)
        ax.scatter(*self.map[neighbours].T, s=30, facecolors="none", edgecolors="black", label="neighbours")
        ax.scatter(*self.map[node], s=160, marker="*", color="black", label=f"paper {node}")
        ax.set(xticks=[], yticks=[], title="learned node representations (PCA), coloured by true subject")
        ax.legend(fontsize=6, markerscale=2, loc="best")
        fig.tight_layout()
        return fig


class MoviePicker:
    """Recommendations from an export folder of a recommend run; the picker offers its most-rated items."""

    def __init__(self, export: Path, choices: int = 400):
        self.export = export
        ids = read_json_object(export / "ids.json")
        self.titles = ids.get("titles", {})
        self.users = ids["user_ids"]
        counts = torch.bincount(load_file(str(export / "embeddings.safetensors"))["train_edges"][1])
        top = counts.argsort(descending=True)[:choices].tolist()
        self.popular = [(self.titles.get(ids["item_ids"][i], ids["item_ids"][i]), ids["item_ids"][i]) for i in top]
        self.model = ids.get("model", "?")

    def answer(self, user, liked) -> str:
        from .serve_recs import recommend

        user = str(user).strip() if user not in (None, "") else None
        liked = tuple(str(item) for item in liked or ())
        if user is None and not liked:
            raise gr.Error("Pick a user, or a few movies you like.")
        try:
            found = recommend(self.export, None if liked else user, liked, 20)
        except UserError as err:
            raise gr.Error(str(err)) from None
        who = f"the movies you picked ({len(liked)})" if liked else f"user {markdown_text(user)}"
        rows = [
            f"| {n} | {markdown_text(str(r['title'] or r['item']))} | {r['score']:.3f} | "
            f"{markdown_text(str(r['because'] or ''))} |"
            for n, r in enumerate(found, start=1)
        ]
        header = f"### Top {len(found)} for {who} ({self.model})\n\n| # | movie | score | because you liked |\n|---|---|---|---|"
        return "\n".join([header, *rows])


def build_demo(run: NodeRun, recs: Path | None = None) -> gr.Blocks:
    explorer = Explorer(run)
    metrics_note = f"model: {run.config.model} on {run.data.source}; {explorer.num_nodes} papers"
    with gr.Blocks(title="graph: papers and movies") as demo:
        with gr.Tab("Papers"):
            gr.Markdown(f"# Which subject is this paper?\n{metrics_note}")
            with gr.Row():
                node = gr.Number(value=0, label="paper number", precision=0)
                button = gr.Button("Classify", variant="primary")
            with gr.Row():
                text = gr.Markdown()
                plot = gr.Plot(label="map")
            button.click(explorer.describe, node, [text, plot], api_name="describe")
            gr.Examples([[0], [1701], [2600]], node)
        with gr.Tab("Movies"):
            if recs is None:
                gr.Markdown("No recommend run yet: `uv run graph train --task recommend` (a few minutes), then reload.")
            else:
                picker = MoviePicker(recs)
                gr.Markdown("# What to watch next\nA user of the data set, or a few movies you like (a new user).")
                with gr.Row():
                    user = gr.Dropdown(picker.users, label="user", value=None, allow_custom_value=True)
                    liked = gr.Dropdown(picker.popular, multiselect=True, label="movies you like (most rated first)")
                ask = gr.Button("Recommend", variant="primary")
                answer = gr.Markdown()
                ask.click(picker.answer, [user, liked], answer, api_name="recommend")
    return demo
