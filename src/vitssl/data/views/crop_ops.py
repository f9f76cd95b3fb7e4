"""Random crop and photometric operations with explicit randomness.

The operations mirror torchvision's ``RandomResizedCrop``, ``ColorJitter``, ``RandomGrayscale``, PIL's
Gaussian blur and ``RandomSolarize`` as used by DINO (Caron et al. 2021, arXiv 2104.14294), but every random
number comes from a :class:`Draws` over a caller-supplied ``torch.Generator`` rather than the global RNG,
which would make the views depend on which worker built them. Pixel work is done by PIL, which is fast on the
small images self-supervised training crops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter

from vitssl.errors import VitsslError

__all__ = [
    "Draws",
    "ToNormalizedTensor",
    "adjust_contrast",
    "color_jitter",
    "gaussian_blur",
    "grayscale",
    "random_resized_crop_box",
    "shift_hue",
    "solarize",
]

_BLOCK = 64
_RRC_TRIES = 10


class Draws:
    """Uniform random numbers from a ``torch.Generator``, fetched in blocks.

    One ``torch.rand`` call per 64 numbers, not one per number, keeps sampling cheap next to the pixel work.

    Args:
        generator: The source of randomness; the sequence of numbers depends only on its seed.
    """

    def __init__(self, generator: torch.Generator) -> None:
        self._generator = generator
        self._block: list[float] = []
        self._next = 0

    def uniform(self, low: float = 0.0, high: float = 1.0) -> float:
        """A number uniform in [low, high)."""
        if self._next == len(self._block):
            self._block = torch.rand(_BLOCK, generator=self._generator, dtype=torch.float64).tolist()
            self._next = 0
        value = self._block[self._next]
        self._next += 1
        return low + (high - low) * value

    def below(self, count: int) -> int:
        """An integer uniform in [0, count)."""
        return min(int(self.uniform() * count), count - 1)

    def chance(self, probability: float) -> bool:
        """True with ``probability`` (always consumes one number, so later draws do not shift with p)."""
        return self.uniform() < probability


def random_resized_crop_box(
    width: int,
    height: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    draws: Draws,
) -> tuple[int, int, int, int]:
    """Sample a crop box as torchvision's ``RandomResizedCrop.get_params`` does.

    Up to 10 tries of an area fraction uniform in ``scale`` and an aspect ratio log-uniform in ``ratio``;
    when none fits, the central crop with the aspect ratio clamped to ``ratio``. Tiny images (smaller than the
    output) are fine: the box is at least 1x1 and is later resized up.

    Args:
        width: Image width in pixels.
        height: Image height in pixels.
        scale: Range of the crop's area as a fraction of the image's.
        ratio: Range of the crop's width / height.
        draws: Randomness.

    Returns:
        The box ``(left, top, right, bottom)`` in pixels, as ``PIL.Image.resize(box=...)`` takes it.
    """
    area = width * height
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(_RRC_TRIES):
        target_area = area * draws.uniform(scale[0], scale[1])
        aspect = math.exp(draws.uniform(log_low, log_high))
        crop_w = round(math.sqrt(target_area * aspect))
        crop_h = round(math.sqrt(target_area / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = draws.below(height - crop_h + 1)
            left = draws.below(width - crop_w + 1)
            return left, top, left + crop_w, top + crop_h
    in_ratio = width / height
    if in_ratio < min(ratio):
        crop_w, crop_h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        crop_w, crop_h = round(height * max(ratio)), height
    else:
        crop_w, crop_h = width, height
    crop_w, crop_h = max(1, min(crop_w, width)), max(1, min(crop_h, height))
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    return left, top, left + crop_w, top + crop_h


def shift_hue(image: Image.Image, shift: float) -> Image.Image:
    """Rotate the hue of an RGB image by ``shift`` turns (in [-0.5, 0.5]), as torchvision's ``adjust_hue``."""
    hue, saturation, value = image.convert("HSV").split()
    # PIL stores a full turn of hue as 0..255; the offset is truncated and wraps as torchvision's uint8 sum
    # does, so the result matches adjust_hue exactly. numpy, not Image.point: point rebuilds its 256-entry
    # table in Python on every call, which dominates the cost on small crops.
    shifted = (np.asarray(hue, dtype=np.int16) + int(shift * 255)) % 256
    hue = Image.fromarray(shifted.astype(np.uint8))
    return Image.merge("HSV", (hue, saturation, value)).convert("RGB")


def adjust_contrast(image: Image.Image, factor: float) -> Image.Image:
    """Blend an RGB image with its mean grey level, as ``PIL.ImageEnhance.Contrast`` (and torchvision) do."""
    # ImageEnhance.Contrast computes the mean through ImageStat's pure-Python histogram sums; numpy is faster.
    mean = int(np.asarray(image.convert("L"), dtype=np.float64).mean() + 0.5)
    return Image.blend(Image.new("RGB", image.size, (mean, mean, mean)), image, factor)


def color_jitter(
    image: Image.Image,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    draws: Draws,
) -> Image.Image:
    """Colour jitter as torchvision's ``ColorJitter``: the four adjustments in a random order.

    Factors are uniform in ``[max(0, 1 - x), 1 + x]`` for brightness, contrast and saturation and in
    ``[-hue, hue]`` for the hue shift; an adjustment whose strength is 0 is skipped. All five random draws are
    made even for skipped adjustments, so the stream of numbers does not depend on the strengths.

    Args:
        image: RGB image.
        brightness: Brightness strength.
        contrast: Contrast strength.
        saturation: Saturation strength.
        hue: Hue strength, at most 0.5.
        draws: Randomness.

    Returns:
        The jittered RGB image.
    """
    keys = [draws.uniform() for _ in range(4)]
    order = sorted(range(4), key=keys.__getitem__)
    factors = (
        draws.uniform(max(0.0, 1.0 - brightness), 1.0 + brightness),
        draws.uniform(max(0.0, 1.0 - contrast), 1.0 + contrast),
        draws.uniform(max(0.0, 1.0 - saturation), 1.0 + saturation),
        draws.uniform(-hue, hue),
    )
    strengths = (brightness, contrast, saturation, hue)
    for op in order:
        if strengths[op] == 0:
            continue
        if op == 0:
            image = ImageEnhance.Brightness(image).enhance(factors[0])
        elif op == 1:
            image = adjust_contrast(image, factors[1])
        elif op == 2:
            image = ImageEnhance.Color(image).enhance(factors[2])
        else:
            image = shift_hue(image, factors[3])
    return image


def gaussian_blur(image: Image.Image, radius: float) -> Image.Image:
    """PIL Gaussian blur with the given radius (the DINO recipe's blur)."""
    return image.filter(ImageFilter.GaussianBlur(radius=radius))


def solarize(image: Image.Image, threshold: int) -> Image.Image:
    """Invert every channel value at or above ``threshold``, as ``PIL.ImageOps.solarize`` does."""
    pixels = np.asarray(image, dtype=np.uint8)
    return Image.fromarray(np.where(pixels >= threshold, 255 - pixels, pixels).astype(np.uint8))


def grayscale(image: Image.Image) -> Image.Image:
    """ITU-R 601-2 luma, repeated in three channels (torchvision's ``rgb_to_grayscale``)."""
    return image.convert("L").convert("RGB")


class ToNormalizedTensor:
    """Turns an RGB PIL image into a float32 (3, H, W) tensor, scaled to [0, 1] and normalised per channel.

    Args:
        mean: Per-channel mean of the [0, 1]-scaled pixels.
        std: Per-channel standard deviation of the [0, 1]-scaled pixels.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise VitsslError(f"data.mean and data.std need 3 values each, std > 0; got mean={mean}, std={std}")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        # One fused pass over the pixels: (x / 255 - mean) / std == (x - 255 mean) * (1 / (255 std)).
        self._shift = torch.tensor([255.0 * m for m in self.mean], dtype=torch.float32).view(3, 1, 1)
        self._scale = torch.tensor([1.0 / (255.0 * s) for s in self.std], dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True))
        tensor = pixels.permute(2, 0, 1).to(torch.float32, memory_format=torch.contiguous_format)
        return tensor.sub_(self._shift).mul_(self._scale)
