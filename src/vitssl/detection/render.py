"""Drawing one image of the ``synthetic_det`` detection dataset: several shapes, possibly overlapping.

The shapes and their class colours are those of the ``synthetic`` classification set (see
:mod:`vitssl.data.sources.synthetic_render`), so a backbone pretrained on ``synthetic`` has seen every object class. An
image holds 1 to 4 objects on one smooth background; a later object may cover part of an earlier one, but each
keeps at least half of its area visible, and its box is the tight box of its visible pixels (the COCO
convention). Everything is drawn at 4x the output size and box-filtered down.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from vitssl.data.sources.synthetic_render import (
    _LUMA,
    _MIN_LUMA_GAP,
    _PAINTERS,
    CLASS_NAMES,
    SUPERSAMPLE,
    _background,
    _class_colour,
    _second_colour,
    _texture,
)

__all__ = ["MAX_OBJECTS", "render_scene"]

MAX_OBJECTS = 4
_MIN_VISIBLE = 0.5  # an object whose visible part falls below this fraction of its area is redrawn elsewhere
_TRIES = 30


def _object_colour(rng: np.random.Generator, class_index: int, background: np.ndarray) -> np.ndarray:
    """A class colour that differs in luminance from the background (so the outline survives greyscale)."""
    colour = _class_colour(rng, class_index)
    for _ in range(50):
        if abs(float(_LUMA @ (colour - background))) >= _MIN_LUMA_GAP:
            return colour
        colour = _class_colour(rng, class_index)
    # Rare: push the brightness away from the background's.
    return np.clip(colour * (0.4 if float(_LUMA @ background) > 127 else 1.8), 0, 255)


def _shape_mask(rng: np.random.Generator, class_index: int, size: int) -> np.ndarray:
    """A boolean (size, size) mask of one randomly placed, scaled and rotated shape."""
    radius = rng.uniform(0.10, 0.22) * size
    cx, cy = rng.uniform(radius, size - radius, 2)
    mask = Image.new("L", (size, size), 0)
    _PAINTERS[CLASS_NAMES[class_index]](ImageDraw.Draw(mask), cx, cy, radius, rng.uniform(0, 2 * math.pi))
    return np.asarray(mask) > 127


def _place(rng: np.random.Generator, class_index: int, size: int, owner: np.ndarray, areas: list[int]) -> np.ndarray:
    """A mask for a new object that leaves every earlier object at least half visible (or, failing that after
    a few tries, an empty mask: the object is skipped)."""
    for _ in range(_TRIES):
        mask = _shape_mask(rng, class_index, size)
        covered = owner[mask]
        ok = all((owner == k).sum() - (covered == k).sum() >= _MIN_VISIBLE * areas[k] for k in range(len(areas)))
        if ok and mask.any():
            return mask
    return np.zeros((size, size), dtype=bool)


def _box(visible: np.ndarray) -> list[float]:
    """The tight box (x1, y1, x2, y2) of a supersampled mask, in output pixels."""
    rows, cols = np.nonzero(visible)
    s = float(SUPERSAMPLE)
    return [float(cols.min()) / s, float(rows.min()) / s, float(cols.max() + 1) / s, float(rows.max() + 1) / s]


def render_scene(rng: np.random.Generator, image_size: int) -> tuple[Image.Image, list[list[float]], list[int]]:
    """Draw one scene.

    Args:
        rng: The source of all randomness (seed it per image).
        image_size: Output side in pixels.

    Returns:
        The RGB image, the boxes (x1, y1, x2, y2 in pixels) and the class indices (0-based, into
        :data:`CLASS_NAMES`) of its objects.
    """
    size = image_size * SUPERSAMPLE
    background_colour = np.clip(rng.uniform(0, 255) + rng.normal(0.0, 12.0, 3), 0, 255)
    canvas = np.asarray(_background(rng, size, background_colour), dtype=np.float32)
    owner = np.full((size, size), -1, dtype=np.int16)  # which object each pixel shows
    classes: list[int] = []
    areas: list[int] = []
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        class_index = int(rng.integers(len(CLASS_NAMES)))
        mask = _place(rng, class_index, size, owner, areas)
        if not mask.any():
            continue
        colour = _object_colour(rng, class_index, background_colour)
        texture = _texture(rng, size, colour, _second_colour(colour, background_colour))
        canvas[mask] = texture[mask]
        owner[mask] = len(classes)
        classes.append(class_index)
        areas.append(int(mask.sum()))
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)).resize(
        (image_size, image_size), Image.Resampling.BOX
    )
    noise = rng.normal(0.0, rng.uniform(0.0, 8.0), (image_size, image_size, 3))
    image = Image.fromarray(np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8))
    boxes = [_box(owner == k) for k in range(len(classes))]
    return image, boxes, classes
