"""The embedded data set: captioned scenes drawn on the fly (course day 37).

Each scene is a group of one or two shapes of one colour and size, and another shape beside it:

    "two small red circles left of a blue triangle"
     ^count ^size ^colour ^shape  ^relation  ^other object

Composition is the point. Three colour-shape pairs (HELD_OUT) never appear in a training image, in either role,
so zero-shot accuracy on scenes whose group is one of them measures whether the model composes "red" and
"triangle" from what it learned apart, not whether it remembers "red triangle". Scenes are drawn from a seed:
the same seed gives the same images and captions, with no file on disk.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (50, 80, 230), "yellow": (235, 200, 30)}
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
COUNTS = ("one", "two")
RELATIONS = ("left of", "right of", "above", "below")
HELD_OUT = frozenset({("red", "triangle"), ("green", "circle"), ("blue", "square")})
"""Colour-shape pairs kept out of training: the never-seen combinations of the test split."""
ATTRIBUTES = {"shape": SHAPES, "colour": tuple(COLOURS), "size": SIZES, "count": COUNTS, "relation": RELATIONS}
"""What zero-shot evaluation asks about the group, with the options it chooses among."""


@dataclass(frozen=True)
class Scene:
    count: str  # one | two
    size: str  # small | large
    colour: str
    shape: str
    relation: str  # where the group is, relative to the other object
    other_colour: str
    other_shape: str

    def caption(self) -> str:
        shapes = self.shape + ("s" if self.count == "two" else "")
        article = "an" if self.other_colour[0] in "aeiou" else "a"
        return f"{self.count} {self.size} {self.colour} {shapes} {self.relation} {article} {self.other_colour} {self.other_shape}"

    def with_attribute(self, attribute: str, value: str) -> Scene:
        """The same scene with one attribute of the group changed: the zero-shot candidates."""
        return replace(self, **{attribute: value})

    def is_seen(self) -> bool:
        """True when neither object is a held-out colour-shape pair."""
        return (self.colour, self.shape) not in HELD_OUT and (self.other_colour, self.other_shape) not in HELD_OUT


def random_scene(rng: random.Random, held_out_group: bool = False) -> Scene:
    """A scene whose objects avoid the held-out pairs, or (held_out_group) whose group is one of them."""
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    allowed = [p for p in pairs if p not in HELD_OUT]
    colour, shape = rng.choice(sorted(HELD_OUT) if held_out_group else allowed)
    other_colour, other_shape = rng.choice([p for p in allowed if p != (colour, shape)])
    return Scene(rng.choice(COUNTS), rng.choice(SIZES), colour, shape, rng.choice(RELATIONS), other_colour, other_shape)


def make_scenes(n: int, seed: int, held_out_group: bool = False) -> list[Scene]:
    rng = random.Random(seed)
    return [random_scene(rng, held_out_group) for _ in range(n)]


def draw(scene: Scene, size: int = 64, seed: int = 0) -> Image.Image:
    """The scene as an RGB image: the group in one half, the other object in the opposite half, small jitter."""
    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), (245, 245, 240))
    pen = ImageDraw.Draw(image)
    half, quarter = size / 2, size / 4
    # the group's centre and the other object's centre, on the axis the relation names
    jitter = lambda: rng.uniform(-size / 16, size / 16)  # noqa: E731
    axis_pos = {"left of": (0, -1), "right of": (0, 1), "above": (1, -1), "below": (1, 1)}[scene.relation]
    axis, sign = axis_pos
    group_at = [half + jitter(), half + jitter()]
    other_at = list(group_at)
    group_at[axis] = half + sign * quarter + jitter() / 2
    other_at[axis] = half - sign * quarter + jitter() / 2
    radius = size * (0.07 if scene.size == "small" else 0.12)
    if scene.count == "one":
        centres = [tuple(group_at)]
    else:  # two objects side by side across the axis, so they stay in the group's half
        across = 1 - axis
        offset = radius * 1.25
        first, second = list(group_at), list(group_at)
        first[across] -= offset
        second[across] += offset
        centres = [tuple(first), tuple(second)]
    for x, y in centres:
        _shape(pen, scene.shape, x, y, radius, COLOURS[scene.colour])
    _shape(pen, scene.other_shape, other_at[0], other_at[1], size * 0.1, COLOURS[scene.other_colour])
    return image


def _shape(pen: ImageDraw.ImageDraw, shape: str, x: float, y: float, r: float, colour: tuple) -> None:
    if shape == "circle":
        pen.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    elif shape == "square":
        pen.rectangle([x - r * 0.9, y - r * 0.9, x + r * 0.9, y + r * 0.9], fill=colour)
    else:
        pen.polygon([(x, y - r), (x - r, y + r * 0.85), (x + r, y + r * 0.85)], fill=colour)
