"""The Gradio demo: an image -> boxes, labels and scores drawn on it (a score slider), and a segmentation overlay.

`build_demo(detector, segmenter)` only builds the app; `detector demo` launches it on 127.0.0.1. Example images
are generated on the spot by the same code that makes the training data. Every bad input (no image, not an
image, truncated, a decompression bomb, too small or too large) becomes a message, not a stack trace: the
handlers get the uploaded file undecoded (`preprocess=False`) and decode it themselves, after the size check.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from dlshared.display import BadImage, markdown_text, open_image

from .artifacts import LoadedDetector
from .data import resize_and_pad
from .evaluate import detect as run_detector
from .pictures import COLOURS
from .shapes import draw_image

MIN_SIDE, MAX_PIXELS = 16, 40_000_000


def open_rgb(value) -> Image.Image:
    """What an image input holds (gradio's undecoded upload, a path, an array, a picture) -> a decoded RGB picture;
    dlshared's open_image refuses bombs, truncated files and non-images, this the pictures too small to detect in."""
    image = open_image(value, MAX_PIXELS)
    if min(image.size) < MIN_SIDE:
        raise BadImage(f"The image is {image.size[0]}x{image.size[1]} pixels; give at least {MIN_SIDE} per side.")
    return image.convert("RGB")


def to_tensor(image) -> tuple[torch.Tensor, Image.Image]:
    """(3, H, W) in [0, 1] and the RGB picture, from anything `open_rgb` takes."""
    rgb = open_rgb(image)
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).float() / 255.0, rgb


def letterbox(image: torch.Tensor, size: int) -> tuple[torch.Tensor, float]:
    """(3, H, W) -> (3, size, size) as the model was trained (longer side scaled, zero padding), and the scale."""
    empty = {"boxes": torch.zeros(0, 4), "masks": torch.zeros(0, *image.shape[-2:], dtype=torch.uint8)}
    padded, _ = resize_and_pad(image, empty, size)
    return padded, size / max(image.shape[-2:])


@torch.no_grad()
def detect(loaded: LoadedDetector, image, threshold: float) -> tuple[Image.Image, list[list]]:
    pixels, rgb = to_tensor(image)
    batch, scale = letterbox(pixels, loaded.image_size)
    found = run_detector(loaded.model, batch[None].to(loaded.device), score_threshold=threshold)[0]
    drawn = rgb.copy()
    if "masks" in found and len(found["masks"]):  # Mask R-CNN: each instance's pixels in its class colour
        class_map = torch.zeros(found["masks"].shape[-2:], dtype=torch.long)
        for mask, label in zip(found["masks"].cpu().flip(0), found["labels"].flip(0).tolist(), strict=True):
            class_map[mask] = label  # drawn lowest score first, so the most confident instance ends on top
        drawn = overlay(drawn, class_map, pixels.shape[-2:], scale)
    pen = ImageDraw.Draw(drawn)
    rows = []
    for box, score, label in zip(found["boxes"] / scale, found["scores"], found["labels"], strict=True):
        name, colour = loaded.classes[int(label) - 1], COLOURS[(int(label) - 1) % len(COLOURS)]
        x1, y1, x2, y2 = box.tolist()
        pen.rectangle([x1, y1, x2, y2], outline=colour, width=max(1, round(2 / scale)))
        pen.text((x1 + 2, max(0, y1 - 11)), f"{name} {score:.2f}", fill=colour)
        rows.append([name, round(float(score), 3), *(round(v, 1) for v in (x1, y1, x2, y2))])
    return drawn, rows


@torch.no_grad()
def segment(segmenter, card: dict, image) -> Image.Image:
    from .segmentation import predict_mask

    pixels, rgb = to_tensor(image)
    batch, scale = letterbox(pixels, card["image_size"])
    return overlay(rgb, predict_mask(segmenter, batch), pixels.shape[-2:], scale)


def overlay(rgb: Image.Image, class_map: torch.Tensor, original_hw, scale: float) -> Image.Image:
    """Class indices (S, S) of the letterboxed image, 0 = nothing, painted half-transparent over the original."""
    h, w = round(original_hw[0] * scale), round(original_hw[1] * scale)
    mask = Image.fromarray(class_map[:h, :w].numpy().astype(np.uint8)).resize(rgb.size, Image.Resampling.NEAREST)
    palette = np.array([(0, 0, 0), *COLOURS], dtype=np.uint8)
    colours = Image.fromarray(palette[np.asarray(mask) % len(palette)])
    alpha = Image.fromarray(((np.asarray(mask) > 0) * 128).astype(np.uint8))
    return Image.composite(colours, rgb, alpha)


def example_image(seed: int | None, size: int = 256) -> Image.Image:
    """A fresh picture from the training distribution (same generator, another seed)."""
    pixels, _ = draw_image(np.random.default_rng(abs(int(seed or 0))), size)
    return Image.fromarray(pixels)


def title_markdown(loaded: LoadedDetector) -> str:
    """The page's heading: the model, its run folder and classes (names from card.json: text, not markup)."""
    classes = markdown_text(", ".join(map(str, loaded.classes)))
    run = markdown_text(loaded.run_dir.name)
    return f"# detector\n{loaded.arch} ({run}), classes: {classes}. Upload an image or make an example."


def build_demo(loaded: LoadedDetector, segmenter=None, segmenter_card: dict | None = None):
    import gradio as gr

    def run_detect(image, threshold):
        try:
            drawn, rows = detect(loaded, image, float(threshold))
        except BadImage as err:
            return None, [], f"⚠️ {markdown_text(str(err))}"
        return drawn, rows, f"{len(rows)} objects above score {float(threshold):.2f}"

    def run_segment(image):
        if segmenter is None:
            return None, "No U-Net trained yet: run `uv run detector segment`, then restart the demo."
        try:
            return segment(segmenter, segmenter_card, image), ""
        except BadImage as err:
            return None, f"⚠️ {markdown_text(str(err))}"

    with gr.Blocks(title="detector") as demo:
        gr.Markdown(title_markdown(loaded))
        with gr.Row():
            image = gr.Image(type="filepath", label="Image")  # the handlers decode it (preprocess=False)
            with gr.Column():
                seed = gr.Number(value=0, precision=0, minimum=0, label="Example seed")
                make = gr.Button("Make an example image")
                gr.Examples(  # a click draws that seed's picture (nothing cached: drawing is instant)
                    [[0], [7], [42]], [seed], [image], fn=example_image, run_on_click=True, cache_examples=False
                )
                threshold = gr.Slider(0.05, 0.95, value=0.3, step=0.05, label="Score threshold")
        with gr.Tab("Detection"):
            boxes_button = gr.Button("Detect", variant="primary")
            drawn = gr.Image(type="pil", format="png", label="Detections")  # png: thin outlines stay exact
            table = gr.Dataframe(headers=["class", "score", "x1", "y1", "x2", "y2"], label="Boxes")
            status = gr.Markdown()
        with gr.Tab("Segmentation"):
            seg_button = gr.Button("Segment", variant="primary")
            overlay = gr.Image(type="pil", format="png", label="U-Net classes over the image")
            seg_status = gr.Markdown()
        make.click(example_image, [seed], [image], api_name="example")
        # preprocess=False: the uploaded file reaches the handler undecoded, so that a truncated file or a
        # decompression bomb is a message from open_rgb, not an error inside gradio's own decoding
        detect_io = {"inputs": [image, threshold], "outputs": [drawn, table, status], "preprocess": False}
        boxes_button.click(run_detect, **detect_io, api_name="detect")
        threshold.release(run_detect, **detect_io)
        seg_button.click(run_segment, [image], [overlay, seg_status], api_name="segment", preprocess=False)
    return demo
