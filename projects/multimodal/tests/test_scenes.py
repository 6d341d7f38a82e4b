"""The embedded scenes: captions, held-out combinations, and pictures that show what the caption says."""

from __future__ import annotations

import numpy as np
import pytest

from multimodal.scenes import COLOURS, HELD_OUT, RELATIONS, Scene, draw, make_scenes


def test_captions_read_as_english():
    assert Scene("two", "small", "red", "circle", "left of", "blue", "triangle").caption() == (
        "two small red circles left of a blue triangle"
    )
    assert Scene("one", "large", "green", "square", "above", "yellow", "circle").caption() == (
        "one large green square above a yellow circle"
    )


def test_held_out_pairs_never_occur_in_training_and_are_the_whole_unseen_split():
    training = make_scenes(5000, seed=0)
    assert all(s.is_seen() for s in training)
    pairs = {(s.colour, s.shape) for s in training} | {(s.other_colour, s.other_shape) for s in training}
    assert len(pairs) == 12 - len(HELD_OUT) and not pairs & HELD_OUT  # every other pair does occur
    unseen = make_scenes(500, seed=3, held_out_group=True)
    assert {(s.colour, s.shape) for s in unseen} == set(HELD_OUT)
    assert all((s.other_colour, s.other_shape) not in HELD_OUT for s in unseen)


def test_scenes_and_pictures_are_seeded():
    assert make_scenes(50, seed=4) == make_scenes(50, seed=4) != make_scenes(50, seed=5)
    scene = make_scenes(1, seed=0)[0]
    assert np.array_equal(np.asarray(draw(scene, 64, seed=1)), np.asarray(draw(scene, 64, seed=1)))


def centroid(image: np.ndarray, colour: tuple) -> tuple[np.ndarray, int]:
    """(x, y) mean of the pixels of exactly `colour`, and their count."""
    ys, xs = np.nonzero((image == np.array(colour)).all(-1))
    return np.array([xs.mean(), ys.mean()]), len(xs)


@pytest.mark.parametrize("relation", RELATIONS)
@pytest.mark.parametrize("count", ["one", "two"])
def test_the_picture_shows_the_relation_the_count_and_the_size(relation, count):
    group = Scene(count, "large", "red", "square", relation, "blue", "circle")
    image = np.asarray(draw(group, 64, seed=7))
    (gx, gy), group_pixels = centroid(image, COLOURS["red"])
    (ox, oy), _ = centroid(image, COLOURS["blue"])
    expected = {"left of": gx < ox - 16, "right of": gx > ox + 16, "above": gy < oy - 16, "below": gy > oy + 16}
    assert expected[relation], (gx, gy, ox, oy)
    small = np.asarray(draw(Scene(count, "small", "red", "square", relation, "blue", "circle"), 64, seed=7))
    assert centroid(small, COLOURS["red"])[1] < group_pixels / 2  # small is well under half the area of large
    if count == "two":  # twice the area of one
        one = np.asarray(draw(Scene("one", "large", "red", "square", relation, "blue", "circle"), 64, seed=7))
        assert group_pixels == pytest.approx(2 * centroid(one, COLOURS["red"])[1], rel=0.1)
