"""Drawing one image of the synthetic shapes dataset.

Each image shows one shape. A class is its outline plus a hue family for the foreground (class k: hue k/10
+-0.03, random saturation and brightness); position, scale, rotation, the foreground's texture and the
background's grey level are random and shared by every class. Raw pixels are a weak cue (the background covers most
of the image and the shape moves), while a network that learns to ignore the background finds the class quickly,
which is what a short self-supervised demo should show. Foreground and background always differ in luminance, so
the shape survives DINO's random grayscale too. (A first version drew every colour at random: within a
few CPU minutes DINO learned nothing class-related from it, so a short demo could not show learning.)

Everything is drawn at 4x the output size and box-filtered down, which antialiases the outlines.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["CLASS_NAMES", "SUPERSAMPLE", "render_sample"]

SUPERSAMPLE = 4
Point = tuple[float, float]
Colour = np.ndarray  # float RGB in [0, 255], shape (3,)

_LUMA = np.array([0.299, 0.587, 0.114])
_MIN_LUMA_GAP = 60.0


def _place(points: list[Point], cx: float, cy: float, radius: float, angle: float) -> list[Point]:
    """Unit-radius shape coordinates -> canvas pixels, rotated by ``angle`` and scaled by ``radius``."""
    cos, sin = math.cos(angle), math.sin(angle)
    return [(cx + radius * (x * cos - y * sin), cy + radius * (x * sin + y * cos)) for x, y in points]


def _rect(half_length: float, half_width: float, offset: float = 0.0) -> list[Point]:
    """An axis-aligned rectangle along x, shifted by ``offset`` along y."""
    a, b = half_length, half_width
    return [(-a, offset - b), (a, offset - b), (a, offset + b), (-a, offset + b)]


def _regular(count: int, radius: float = 1.0, phase: float = -math.pi / 2) -> list[Point]:
    return [
        (
            radius * math.cos(phase + 2 * math.pi * k / count),
            radius * math.sin(phase + 2 * math.pi * k / count),
        )
        for k in range(count)
    ]


def _disk(draw: ImageDraw.ImageDraw, cx: float, cy: float, radius: float, fill: int) -> None:
    draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)


# Each painter draws its shape (255) on a black mask, centred at (cx, cy) with radius r and rotation a.
Painter = Callable[[ImageDraw.ImageDraw, float, float, float, float], None]


def _circle(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, a: float) -> None:
    _disk(d, cx, cy, 0.85 * r, 255)


def _square(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, a: float) -> None:
    d.polygon(_place(_rect(0.72, 0.72), cx, cy, r, a), fill=255)


def _triangle(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, a: float) -> None:
    d.polygon(_place(_regular(3), cx, cy, r, a), fill=255)


def _ring(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, a: float) -> None:
    _disk(d, cx, cy, r, 255)
    _disk(d, cx, cy, 0.55 * r, 0)


def _cross(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, a: float) -> None:
    d.polygon(_place(_rect(1.0, 0.28), cx, cy, r, a), fill=255)
    d.polygon(_place(_rect(1.0, 0.28), cx, cy, r, a + math.pi / 2), fill=255)


def _star(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, a: float) -> None:
    outer, inner = _regular(5), _regular(5, 0.42, -math.pi / 2 + math.pi / 5)
    points = [p for pair in zip(outer, inner, strict=True) for p in pair]
    d.polygon(_place(points, cx, cy, r, a), fill=255)


def _bars(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, a: float) -> None:
    for offset in (-0.62, 0.0, 0.62):
        d.polygon(_place(_rect(0.9, 0.15, offset), cx, cy, r, a), fill=255)


def _dumbbell(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, a: float) -> None:
    d.polygon(_place(_rect(0.7, 0.13), cx, cy, r, a), fill=255)
    for x, y in _place([(-0.64, 0.0), (0.64, 0.0)], cx, cy, r, a):
        _disk(d, x, y, 0.36 * r, 255)


def _crescent(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, a: float) -> None:
    _disk(d, cx, cy, r, 255)
    ((x, y),) = _place([(0.42, 0.0)], cx, cy, r, a)
    _disk(d, x, y, 0.82 * r, 0)


def _frame(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, a: float) -> None:
    d.polygon(_place(_rect(0.8, 0.8), cx, cy, r, a), fill=255)
    d.polygon(_place(_rect(0.46, 0.46), cx, cy, r, a), fill=0)


_PAINTERS: dict[str, Painter] = {
    "circle": _circle,
    "square": _square,
    "triangle": _triangle,
    "ring": _ring,
    "cross": _cross,
    "star": _star,
    "bars": _bars,
    "dumbbell": _dumbbell,
    "crescent": _crescent,
    "frame": _frame,
}
CLASS_NAMES: tuple[str, ...] = tuple(_PAINTERS)


@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x) of a size x size canvas, as float32 (size, 1) and (1, size)."""
    coords = np.arange(size, dtype=np.float32) + 0.5
    return coords[:, None], coords[None, :]


def _class_colour(rng: np.random.Generator, class_index: int) -> Colour:
    """A foreground colour from the class's hue family (hue = class / 10, +-0.03) with random saturation and
    brightness, so a class looks alike across images without every image being the same colour."""
    hue = (class_index / len(CLASS_NAMES) + rng.uniform(-0.03, 0.03)) % 1.0
    rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.55, 1.0), rng.uniform(0.5, 1.0))
    return np.array(rgb) * 255.0


def _colour_pair(rng: np.random.Generator, class_index: int) -> tuple[Colour, Colour]:
    """A random background and a class-coloured foreground whose luminances differ by at least
    ``_MIN_LUMA_GAP`` (so the outline survives grayscale)."""
    foreground = _class_colour(rng, class_index)
    for _ in range(100):
        # A grey level with a faint tint: colour belongs to the object, as in a product photo.
        background = np.clip(rng.uniform(0, 255) + rng.normal(0.0, 12.0, 3), 0, 255)
        if abs(float(_LUMA @ (foreground - background))) >= _MIN_LUMA_GAP:
            return background, foreground
    # Unreachable in practice (most random pairs qualify); black or white always does.
    return np.full(3, 0.0 if float(_LUMA @ foreground) > 127 else 255.0), foreground


def _blend(a: Colour, b: Colour, weight: np.ndarray) -> np.ndarray:
    blended: np.ndarray = a[None, None, :] + (b - a)[None, None, :] * weight[..., None]
    return blended


def _texture(rng: np.random.Generator, size: int, first: Colour, second: Colour) -> np.ndarray:
    """A (size, size, 3) float texture of two colours: solid, stripes, dots or a linear gradient."""
    kind = int(rng.integers(4))
    ys, xs = _grid(size)
    angle = rng.uniform(0, math.pi)
    if kind == 0:
        weight = np.zeros((size, size), dtype=np.float32)
    elif kind == 1:
        period = rng.uniform(3, 6) * SUPERSAMPLE
        phase = (xs * math.cos(angle) + ys * math.sin(angle)) / period
        weight = (phase % 1.0 < 0.5).astype(np.float32)
    elif kind == 2:
        spacing = rng.uniform(4, 7) * SUPERSAMPLE
        dx, dy = xs % spacing - spacing / 2, ys % spacing - spacing / 2
        weight = (dx * dx + dy * dy < (0.3 * spacing) ** 2).astype(np.float32)
    else:
        ramp = (xs * math.cos(angle) + ys * math.sin(angle)) / (size * 1.42)
        weight = np.broadcast_to(ramp - ramp.min(), (size, size)).astype(np.float32)
    return _blend(first, second, weight)


def _background(rng: np.random.Generator, size: int, colour: Colour) -> Image.Image:
    """Background: the colour modulated by a smooth random field, plus a few small distractor dots.

    Backgrounds are deliberately untextured: a textured background shared by all crops of an image is an
    easier cue than the shape for instance-level self-supervision, and it would hide whether a method learns
    shape within a short demo budget. Textures live on the foreground.
    """
    # Low-frequency "clouds": a coarse random grid upsampled smoothly.
    coarse = rng.normal(0.0, 22.0, (4, 4, 3)) + colour
    field = Image.fromarray(np.clip(coarse, 0, 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
    image = field.convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(0, 3))):
        x, y = rng.uniform(0, size, 2)
        dot = tuple(int(v) for v in rng.uniform(0, 255, 3))
        radius = rng.uniform(0.02, 0.05) * size
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=dot)
    return image


def _second_colour(foreground: Colour, background: Colour) -> Colour:
    """A texture colour on the same side of the background's luminance as ``foreground``, so textures never
    erase the outline. The texture is kept subtle (low contrast): a bold texture survives every augmentation
    and would become the cue that self-supervision latches onto instead of the shape."""
    if float(_LUMA @ foreground) > float(_LUMA @ background):
        return foreground + 0.18 * (255.0 - foreground)
    return foreground * 0.82


def render_sample(class_index: int, rng: np.random.Generator, image_size: int) -> tuple[Image.Image, Image.Image]:
    """Draw one image of class ``class_index`` and its foreground mask.

    Args:
        class_index: Index into :data:`CLASS_NAMES`.
        rng: The source of all randomness (seed it per image to make images independent of each other).
        image_size: Output side in pixels.

    Returns:
        The RGB image and its mode "L" mask (255 = foreground), both ``image_size`` square.
    """
    size = image_size * SUPERSAMPLE
    radius = rng.uniform(0.22, 0.36) * size
    slack = 0.5 * size - radius
    cx, cy = 0.5 * size + rng.uniform(-slack, slack, 2) * 0.85
    mask = Image.new("L", (size, size), 0)
    _PAINTERS[CLASS_NAMES[class_index]](ImageDraw.Draw(mask), cx, cy, radius, rng.uniform(0, 2 * math.pi))
    background_colour, foreground_colour = _colour_pair(rng, class_index)
    foreground = _texture(rng, size, foreground_colour, _second_colour(foreground_colour, background_colour))
    foreground_image = Image.fromarray(np.clip(foreground, 0, 255).astype(np.uint8))
    composite = Image.composite(foreground_image, _background(rng, size, background_colour), mask)
    # A box filter over each 4x4 block is exact area averaging: antialiased edges without ringing.
    image = composite.resize((image_size, image_size), Image.Resampling.BOX)
    noise = rng.normal(0.0, rng.uniform(0.0, 10.0), (image_size, image_size, 3))
    image = Image.fromarray(np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8))
    small_mask = np.asarray(mask.resize((image_size, image_size), Image.Resampling.BOX))
    return image, Image.fromarray(np.where(small_mask >= 128, 255, 0).astype(np.uint8))
