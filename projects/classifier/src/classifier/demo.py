"""The Gradio demo: draw or upload an image -> the top-5 classes, the 32x32 input the model saw, and its card.

`build_demo(predictor)` only builds the app; `classifier demo` launches it (dlshared.demo.launch, 127.0.0.1).
Every bad input (nothing drawn, not an image, too small, too large, odd modes) becomes a message, not a trace.
"""

from __future__ import annotations

import dataclasses

import gradio as gr
import numpy as np
import torch
from PIL import Image, ImageOps

from dlshared.demo import scratch_folder
from dlshared.display import UNREADABLE, BadImage, markdown_text, open_image
from dlshared.outputs import safe_filename

from .artifacts import Predictor
from .data import digits_to_images, load_data

MIN_SIDE, MAX_PIXELS = 8, 50_000_000


def flatten_alpha(image: Image.Image, background: int = 255) -> Image.Image:
    """RGBA / LA / palette images -> RGB over a white background (drawings have transparent backgrounds)."""
    image = image.convert("RGBA")
    canvas = Image.new("RGBA", image.size, (background,) * 3 + (255,))
    return Image.alpha_composite(canvas, image).convert("RGB")


def digits_style(image: Image.Image, size: int) -> torch.Tensor:
    """Any picture of a digit -> what the digits model was trained on: light ink on black, centred, 8x8 resolution
    upscaled to `size`. [1, 1, size, size] in [0, 1]."""
    gray = np.asarray(flatten_alpha(image).convert("L"), dtype=np.float32) / 255.0
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if border.mean() > 0.5:  # dark ink on a light page: invert to the dataset's light-on-dark
        gray = 1.0 - gray
    ink = gray > 0.2
    if not ink.any():
        raise BadImage("The image is blank: draw or upload a digit.")
    rows, cols = np.where(ink.any(1))[0], np.where(ink.any(0))[0]
    crop = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    side = int(max(crop.shape) * 1.25) + 1  # the dataset's digits fill ~80% of their box
    square = np.zeros((side, side), np.float32)
    top, left = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    square[top : top + crop.shape[0], left : left + crop.shape[1]] = crop
    small = np.asarray(Image.fromarray(square).resize((8, 8), Image.Resampling.BOX))
    small = small / max(small.max(), 1e-6) * 16.0  # the dataset's 0..16 range
    return digits_to_images(small.reshape(1, 64), size)


def photo_style(image: Image.Image, size: int, channels: int) -> torch.Tensor:
    image = (
        flatten_alpha(image).convert("RGB" if channels == 3 else "L").resize((size, size), Image.Resampling.BILINEAR)
    )
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array.reshape(size, size, channels)).permute(2, 0, 1).unsqueeze(0)


def to_model_input(image: Image.Image, card: dict) -> torch.Tensor:
    w, h = image.size
    if min(w, h) < MIN_SIDE:
        raise BadImage(f"The image is {w}x{h} pixels; it needs at least {MIN_SIDE}x{MIN_SIDE}.")
    if w * h > MAX_PIXELS:
        raise BadImage(f"The image is {w}x{h} pixels; please upload one under {MAX_PIXELS // 1_000_000} megapixels.")
    image = ImageOps.exif_transpose(image)
    if card["style"] == "digits":
        return digits_style(image, card["image_size"])
    return photo_style(image, card["image_size"], card["in_channels"])


def classify(predictor: Predictor, image: Image.Image) -> tuple[dict, np.ndarray]:
    x = to_model_input(image, predictor.card)
    probs = torch.softmax(predictor(x).float(), dim=1)[0]
    top = probs.topk(min(5, len(probs)))
    labels = {predictor.card["classes"][i]: float(p) for p, i in zip(top.values, top.indices, strict=True)}
    seen = (x[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8)
    return labels, seen.squeeze(-1) if seen.shape[-1] == 1 else seen


def model_card_markdown(predictor: Predictor) -> str:
    card, metrics = predictor.card, predictor.metrics or {}
    accuracy, test = metrics.get("test_accuracy"), metrics.get("test") or {}
    accuracy = f"{accuracy:.2%} on {test.get('samples', '?')} test images" if isinstance(accuracy, float) else "n/a"
    backbone, source = markdown_text(str(card["backbone"])), markdown_text(str(card.get("source", "n/a")))
    return (
        f"**Model** {backbone}, {card.get('parameters', 0):,} parameters ({predictor.kind})  \n"
        f"**Data** {source}  \n"
        f"**Classes** {markdown_text(', '.join(map(str, card['classes'])))}  \n"
        f"**Test accuracy** {accuracy}  \n**Input** {card['image_size']}x{card['image_size']}, "
        f"{card['in_channels']} channel(s), [0, 1] pixels"
    )


def example_images(predictor: Predictor, n: int = 6) -> list[str]:
    """A few test-split images written as PNGs on the spot (nothing is shipped in the repo)."""
    try:
        test = load_data(dataclasses.replace(predictor.config, augment=False)).test  # no training transforms
    except Exception:  # the run's data may be gone (a user's folder); the demo works without examples
        return []
    folder = scratch_folder("classifier-examples-")
    paths = []
    for i in np.linspace(0, len(test) - 1, n).astype(int):
        image, label = test[int(i)]
        array = (image.permute(1, 2, 0).numpy() * 255).astype(np.uint8).squeeze(-1 if image.shape[0] == 1 else ())
        # a class name is data from card.json: one harmless file name, never a path out of the folder
        path = folder / f"{safe_filename(predictor.card['classes'][label], 'class')}_{i}.png"
        Image.fromarray(array).resize((128, 128), Image.Resampling.NEAREST).save(path)
        paths.append(str(path))
    return paths


def report_unreadable(sketchpad: gr.Sketchpad) -> gr.Sketchpad:
    """Make the images gradio cannot decode for this sketchpad (a truncated file, a decompression bomb: what an API
    client, not the browser's canvas, can send) reach the handler as a message (key "unreadable") instead of
    failing the request before the handler runs. Wraps this one component's own preprocess: a subclass would
    do the same, but gradio writes a .pyi stub next to the module of every component subclass."""
    decode = sketchpad.preprocess

    def preprocess(payload):
        try:
            return decode(payload)
        except (*UNREADABLE, Image.DecompressionBombError) as err:
            reason = "too large" if isinstance(err, Image.DecompressionBombError) else "truncated or damaged"
            return {"background": None, "layers": [], "composite": None, "unreadable": f"The drawing is {reason}."}

    sketchpad.preprocess = preprocess
    return sketchpad


def build_demo(predictor: Predictor) -> gr.Blocks:
    def run(load) -> tuple:
        try:
            labels, seen = classify(predictor, load())
            return labels, seen, ""
        except BadImage as err:
            return None, None, f"⚠️ {markdown_text(str(err))}"

    def classify_upload(path: str | None):
        return run(lambda: open_image(path, MAX_PIXELS))

    def classify_sketch(value: dict | None):
        def load():
            value_ = value or {}
            if value_.get("unreadable"):
                raise BadImage(value_["unreadable"])
            if value_.get("composite") is None:
                raise BadImage("Draw a digit first.")
            composite = np.asarray(value_["composite"], dtype=np.uint8)
            if composite.shape[0] * composite.shape[1] > MAX_PIXELS:
                raise BadImage(f"The drawing is {composite.shape[1]}x{composite.shape[0]} pixels; that is too large.")
            return Image.fromarray(composite)

        return run(load)

    with gr.Blocks(title="classifier") as demo:
        gr.Markdown("# Image classifier\nDraw or upload an image; the model returns its five most likely classes.")
        with gr.Row():
            with gr.Column():
                with gr.Tab("Draw"):
                    sketch = gr.Sketchpad(
                        type="numpy",
                        label="Draw a digit (pick the brush, then draw)",
                        canvas_size=(280, 280),
                        brush=gr.Brush(default_size=14, colors=["#000000"], color_mode="fixed"),
                        layers=False,
                        transforms=(),
                    )
                    report_unreadable(sketch)
                    sketch_button = gr.Button("Classify drawing", variant="primary")
                with gr.Tab("Upload"):
                    upload = gr.File(label="Image file", type="filepath")
                    upload_button = gr.Button("Classify file", variant="primary")
                    examples = example_images(predictor)
                    if examples:
                        gr.Examples(examples, inputs=upload, label="Test images")
            with gr.Column():
                message = gr.Markdown()
                label = gr.Label(num_top_classes=5, label="Top-5 classes")
                seen = gr.Image(label="What the model sees", interactive=False, height=160)
                gr.Markdown(model_card_markdown(predictor))
        outputs = [label, seen, message]
        sketch_button.click(classify_sketch, sketch, outputs, api_name="classify_sketch")
        upload_button.click(classify_upload, upload, outputs, api_name="classify_upload")
    return demo
