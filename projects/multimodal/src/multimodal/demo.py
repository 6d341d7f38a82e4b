"""The Gradio demo, three tabs, all answered by one trained CLIP.

Search: a text -> the closest images of an indexed folder (by default the run's test scenes, indexed at start).
Similar: an uploaded image -> the closest indexed images.
Zero-shot: an uploaded image and your own comma-separated labels -> a probability per label (the softmax of
the scaled cosine similarities: CLIP's classifier is a list of names).

`build_demo(run, index_dir)` only builds the app; `multimodal demo` launches it (127.0.0.1). An empty query, no
labels, no image: a message in the page, not a trace.
"""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import gradio as gr
import torch
import torch.nn.functional as F

from .artifacts import ClipRun
from .evaluate import embed_texts

MAX_QUERY = 300
MAX_LABELS = 50


class Searcher:
    """An index folder (search.py's) and the run that embeds queries for it."""

    def __init__(self, run: ClipRun, index_dir: Path):
        self.run, self.index_dir = run, index_dir
        meta = json.loads((index_dir / "index.json").read_text(encoding="utf-8"))
        self.root = Path(meta["images"])
        self.files = [f["path"] for f in json.loads((index_dir / "files.json").read_text(encoding="utf-8"))]
        self.index = faiss.read_index(str(index_dir / "images.faiss"))

    @torch.no_grad()
    def embed_image(self, image) -> torch.Tensor:
        pixels = self.run.preprocess(image.convert("RGB"))[None].to(self.run.device)  # [1, 3, H, W]
        return F.normalize(self.run.model.encode_image(pixels).float(), dim=-1).cpu()  # [1, D]

    def example_images(self, n: int = 3) -> list[str]:
        return [str(self.root / name) for name in self.files[:n]]

    def nearest(self, query: torch.Tensor, k: int) -> list[tuple[str, str]]:
        scores, rows = self.index.search(query.numpy(), min(k, len(self.files)))
        return [(str(self.root / self.files[r]), f"{s:.3f}") for s, r in zip(scores[0], rows[0], strict=True) if r >= 0]

    def by_text(self, text: str | None, k: int = 8) -> list[tuple[str, str]]:
        if not text or not text.strip():
            raise gr.Error("Type what to look for, e.g. two small red circles left of a blue triangle.")
        query = embed_texts(self.run.model, self.run.tokenizer, [text.strip()[:MAX_QUERY]], self.run.device)
        return self.nearest(query.cpu(), k)

    def by_image(self, image, k: int = 8) -> list[tuple[str, str]]:
        if image is None:
            raise gr.Error("Upload an image first.")
        return self.nearest(self.embed_image(image), k)

    def zero_shot(self, image, labels: str | None) -> dict[str, float]:
        if image is None:
            raise gr.Error("Upload an image first.")
        names = [name.strip()[:MAX_QUERY] for name in (labels or "").split(",") if name.strip()][:MAX_LABELS]
        if len(names) < 2:
            raise gr.Error("Give at least two labels, separated by commas: red circle, blue square")
        texts = embed_texts(self.run.model, self.run.tokenizer, [f"a photo of a {n}." for n in names], self.run.device)
        scale = self.run.model.logit_scale.exp().item()
        probabilities = (scale * self.embed_image(image) @ texts.cpu().T).softmax(-1)[0]  # [labels]
        return {name: round(p, 4) for name, p in zip(names, probabilities.tolist(), strict=True)}


SEARCH_EXAMPLES = [
    "two small red circles left of a blue triangle",
    "one large green square above a yellow circle",
    "two small blue triangles below a red square",
]
ZERO_SHOT_LABELS = "red circle, green square, blue triangle, yellow circle"


def build_demo(run: ClipRun, index_dir: Path) -> gr.Blocks:
    searcher = Searcher(run, index_dir)
    with gr.Blocks(title="multimodal: CLIP search and zero-shot") as demo:
        gr.Markdown(f"# CLIP on captioned scenes\n{len(searcher.files)} images indexed from `{searcher.root}`.")
        with gr.Tab("Search by text"):
            query = gr.Textbox(label="Describe a picture", value="two small red circles left of a blue triangle")
            found = gr.Gallery(label="Closest images (cosine similarity)", columns=4, height="auto")
            gr.Button("Search").click(searcher.by_text, query, found, api_name="search")
            gr.Examples(SEARCH_EXAMPLES, query, label="Try")
        with gr.Tab("Similar images"):
            upload = gr.Image(type="pil", label="An image")
            similar = gr.Gallery(label="Closest indexed images", columns=4, height="auto")
            gr.Button("Find similar").click(searcher.by_image, upload, similar, api_name="similar")
            gr.Examples(searcher.example_images(), upload, label="Indexed images")
        with gr.Tab("Zero-shot"):
            picture = gr.Image(type="pil", label="An image")
            labels = gr.Textbox(label="Labels, comma-separated", value="red circle, red square, red triangle")
            probabilities = gr.Label(label="Probability per label", num_top_classes=10)
            gr.Button("Classify").click(searcher.zero_shot, [picture, labels], probabilities, api_name="zero_shot")
            gr.Examples([[path, ZERO_SHOT_LABELS] for path in searcher.example_images()], [picture, labels])
    return demo
