"""The metrics, defined once: retrieval recall@k and zero-shot accuracy per attribute (course day 37).

Zero-shot classification with CLIP needs no classifier: to ask "which colour is the group?", write one caption
per option (the scene's own caption with the colour replaced), embed them, and pick the caption closest to the
image. Asked of the test scenes whose colour-shape pair never appeared in training ("unseen"), it measures
composition; of the others ("seen"), recognition.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .scenes import ATTRIBUTES, Scene


@torch.no_grad()
def embed_images(model, pairs, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """L2-normalised image embeddings of every pair's image, in order: [N, D]."""
    model.eval()
    out = []
    for start in range(0, len(pairs), batch_size):
        images = torch.stack([pairs[i][0] for i in range(start, min(start + batch_size, len(pairs)))])
        out.append(F.normalize(model.encode_image(images.to(device)).float(), dim=-1))
    return torch.cat(out)


@torch.no_grad()
def embed_texts(model, tokenizer, texts: list[str], device: torch.device, batch_size: int = 512) -> torch.Tensor:
    """L2-normalised text embeddings: [N, D]."""
    model.eval()
    out = []
    for start in range(0, len(texts), batch_size):
        tokens = tokenizer(texts[start : start + batch_size]).to(device)  # [b, context_length]
        out.append(F.normalize(model.encode_text(tokens).float(), dim=-1))
    return torch.cat(out)


def retrieval_recall(image_features: torch.Tensor, text_features: torch.Tensor, ks=(1, 5, 10)) -> dict:
    """Pair i is image i and caption i. text->image recall@k: the share of captions whose own image is among the
    k images closest to them; image->text likewise. The rank is the number of candidates scoring strictly
    higher, so a caption that occurs twice (the same text, the same embedding) is as right as its twin."""
    similarity = image_features @ text_features.T  # [N images, N texts]
    own = similarity.diagonal()  # [N]
    # rank of the own pair: how many candidates score higher (0 = first)
    image_rank = (similarity > own[:, None]).sum(1)  # image i among all texts
    text_rank = (own[:, None] < similarity.T).sum(1)  # text i among all images
    metrics = {}
    for k in ks:
        metrics[f"image_to_text_r{k}"] = round((image_rank < k).float().mean().item(), 4)
        metrics[f"text_to_image_r{k}"] = round((text_rank < k).float().mean().item(), 4)
    return metrics


def zero_shot_attributes(model, tokenizer, scenes: list[Scene], image_features: torch.Tensor, device) -> dict:
    """Accuracy per attribute of the group (shape, colour, size, count, relation): for each scene, the caption
    with the true value against the same caption with each other value."""
    candidates = {
        attribute: [[scene.with_attribute(attribute, v).caption() for v in options] for scene in scenes]
        for attribute, options in ATTRIBUTES.items()
    }
    texts = sorted({c for rows in candidates.values() for row in rows for c in row})
    index = {text: i for i, text in enumerate(texts)}
    text_features = embed_texts(model, tokenizer, texts, device)  # every distinct candidate, embedded once
    accuracy = {}
    for attribute, options in ATTRIBUTES.items():
        rows = torch.tensor([[index[c] for c in row] for row in candidates[attribute]])  # [N, options]
        scores = torch.einsum("nd,nod->no", image_features, text_features[rows])  # [N, options]
        truth = torch.tensor([options.index(getattr(scene, attribute)) for scene in scenes])
        accuracy[attribute] = round((scores.argmax(1).cpu() == truth).float().mean().item(), 4)
    return accuracy


def evaluate(model, tokenizer, splits, device: torch.device) -> dict:
    """Retrieval on every test split; zero-shot per attribute on the scene splits (none for real data)."""
    metrics = {}
    for name, pairs in splits.test.items():
        image_features = embed_images(model, pairs, device)
        text_features = embed_texts(model, tokenizer, pairs.captions, device)
        metrics[name] = retrieval_recall(image_features, text_features)
        if name in splits.scenes:
            zero_shot = zero_shot_attributes(model, tokenizer, splits.scenes[name], image_features, device)
            metrics[name]["zero_shot"] = zero_shot
            metrics[name]["zero_shot_mean"] = round(sum(zero_shot.values()) / len(zero_shot), 4)
    return metrics


TEMPLATES = ("a photo of a {}.", "a picture of a {}.", "{}")
"""Prompt templates for class names (CLIP's trick: the mean embedding of several phrasings of each class)."""


@torch.no_grad()
def zero_shot_folder(model, tokenizer, preprocess, folder, device, templates=TEMPLATES, batch_size: int = 128) -> dict:
    """Zero-shot accuracy on a torchvision ImageFolder tree (one folder per class; its name, with _ as spaces, is
    the class name): each class's text embedding is the normalised mean over `templates`. Returns accuracy, the
    class names and the confusion matrix (rows: true class, columns: predicted)."""
    from torchvision.datasets import ImageFolder

    dataset = ImageFolder(str(folder), transform=preprocess)
    names = [c.replace("_", " ") for c in dataset.classes]
    prompts = [t.format(name) for name in names for t in templates]  # [C * T]
    text = embed_texts(model, tokenizer, prompts, device).view(len(names), len(templates), -1).mean(1)
    text = F.normalize(text, dim=-1)  # [C, D]
    confusion = torch.zeros(len(names), len(names), dtype=torch.long)
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        images = torch.stack([image for image, _ in items]).to(device)
        predicted = (F.normalize(model.encode_image(images).float(), dim=-1) @ text.T).argmax(1).cpu()  # [b]
        for truth, guess in zip((label for _, label in items), predicted.tolist(), strict=True):
            confusion[truth, guess] += 1
    accuracy = confusion.diagonal().sum().item() / max(1, confusion.sum().item())
    return {"accuracy": round(accuracy, 4), "classes": names, "confusion": confusion.tolist(), "images": len(dataset)}
