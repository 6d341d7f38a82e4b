"""What a run leaves to look at: RUN/curves.png, RUN/zero_shot.png and RUN/search.png."""

from __future__ import annotations

from pathlib import Path

from dlshared.checkpoint import atomic_path

from .evaluate import embed_images, embed_texts
from .scenes import ATTRIBUTES


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves_figure(history: list[dict]):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], label="training")
    ax.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax.set(xlabel="epoch", ylabel="contrastive loss", title="loss per epoch")
    ax.legend()
    fig.tight_layout()
    return fig


def zero_shot_figure(tests: dict):
    """Accuracy per attribute, seen against never-seen colour-shape pairs, with chance marked."""
    plt = _pyplot()
    names = list(ATTRIBUTES)
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    width = 0.38
    for offset, split in ((-width / 2, "seen"), (width / 2, "unseen")):
        if split in tests and "zero_shot" in tests[split]:
            values = [tests[split]["zero_shot"][n] for n in names]
            label = "seen pairs" if split == "seen" else "never-seen pairs"
            ax.bar([i + offset for i in range(len(names))], values, width, label=label)
    for i, name in enumerate(names):
        chance = 1 / len(ATTRIBUTES[name])
        ax.plot([i - 0.45, i + 0.45], [chance, chance], color="black", linestyle=":", linewidth=1)
    ax.set(xticks=range(len(names)), xticklabels=names, ylim=(0, 1.05), ylabel="zero-shot accuracy")
    ax.set_title("zero-shot accuracy per attribute (dotted: chance)")
    ax.legend(loc="lower left")
    fig.tight_layout()
    return fig


def search_figure(model, tokenizer, pairs, device, queries: int = 4, k: int = 5):
    """The first `queries` test captions, each with the k test images closest to it (green: its own image)."""
    plt = _pyplot()
    queries, k = min(queries, len(pairs)), min(k, len(pairs))  # a small real test split
    image_features = embed_images(model, pairs, device)
    captions = pairs.captions[:queries]
    text_features = embed_texts(model, tokenizer, captions, device)
    fig, axes = plt.subplots(queries, k, figsize=(1.6 * k, 1.9 * queries), squeeze=False)
    for q, caption in enumerate(captions):
        scores, rows = (text_features[q] @ image_features.T).topk(k)
        for col, (score, row) in enumerate(zip(scores.tolist(), rows.tolist(), strict=True)):
            ax = axes[q][col]
            ax.imshow(pairs.load(row))
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("green" if row == q else "lightgrey")
                spine.set_linewidth(3 if row == q else 1)
            ax.set_xlabel(f"{score:.2f}", fontsize=8)
        axes[q][0].set_title(caption, fontsize=8, loc="left")
    fig.tight_layout()
    return fig


def save_pictures(run, model, tokenizer, splits, history: list[dict], tests: dict) -> None:
    if not run.is_main:
        return
    plt = _pyplot()
    figures = {"curves": curves_figure(history)}
    if any("zero_shot" in t for t in tests.values()):
        figures["zero_shot"] = zero_shot_figure(tests)
    figures["search"] = search_figure(model, tokenizer, splits.test["seen"], next(model.parameters()).device)
    for name, fig in figures.items():
        with atomic_path(Path(run.dir) / f"{name}.png") as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        run.log.figure(name, fig, 0)
        plt.close(fig)
