"""SiT's image corruptions as composable transforms (Atito et al. 2021, arXiv 2104.03602, section 3.1).

SiT learns by restoring a corrupted view from its uncorrupted context. Each corruption here works on one
(3, H, W) float image in [0, 1] pixel space, draws all its randomness from the sample's generator (so the result
is a function of (seed, epoch, sample index), see :mod:`vitssl.data.seeding`), and returns the corrupted image
together with the (H, W) boolean mask of the pixels it touched:

* :class:`GrayscalePatch`: one rectangle replaced by the mean of its three channels;
* :class:`BlurPatch`: one rectangle Gaussian-blurred (odd kernel, random sigma);
* :class:`RandomDrop`: rectangles filled with Gaussian noise (or the mean colour) until a drawn area fraction;
* :class:`RandomReplace`: the same rectangles, copied from another image of the batch. A transform sees one image
  only, so it just draws the mask; :func:`replace_in_batch` pastes the pixels when the batch is collated;
* :class:`ColourDistortion`: brightness, contrast and saturation of the whole view.

:class:`CorruptionPipeline` applies a list of them in order, each with its own probability.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from vitssl.data.views.crop_ops import Draws
from vitssl.errors import VitsslError

__all__ = [
    "BlurPatch",
    "ColourDistortion",
    "Corrupted",
    "Corruption",
    "CorruptionPipeline",
    "GrayscalePatch",
    "Placement",
    "RandomDrop",
    "RandomReplace",
    "replace_in_batch",
    "sample_box",
]

_MAX_RECTANGLES = 256  # a safety bound on the fill-until-area loops (never reached with sane settings)


def _check_pair(
    name: str, value: Sequence[float], low: float, high: float, low_open: bool = False
) -> tuple[float, float]:
    ok = (
        len(value) == 2
        and value[0] <= value[1]
        and value[1] <= high
        and (value[0] > low if low_open else value[0] >= low)
    )
    if not ok:
        bound = ">" if low_open else ">="
        raise VitsslError(
            f"{name} must be two numbers min <= max with min {bound} {low} and max <= {high}, got {list(value)}"
        )
    return float(value[0]), float(value[1])


def _check_p(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise VitsslError(f"{name} is a probability and must lie in [0, 1], got {p}")


Placement = Literal["corner", "inside"]
PLACEMENTS = ("corner", "inside")


def sample_box(
    height: int, width: int, side: tuple[float, float], draws: Draws, placement: Placement = "inside"
) -> tuple[int, int, int, int]:
    """A random rectangle of an image: sides uniform in ``side`` (fractions of each image side), at least one pixel.

    ``placement="inside"`` (vitssl 0.1) places it uniformly so that it fits entirely: every rectangle has the
    drawn size. ``placement="corner"`` (the SiT authors' code, docs/methods.md 3.1) draws its top-left corner
    uniformly over the whole image and clips the rectangle at the right and bottom borders, so rectangles near
    the border are smaller: with sides in (0.05, 1) the expected area is about 0.12 of the image instead of 0.28.

    Returns:
        ``(top, left, box_height, box_width)``.
    """
    box_h = min(height, max(1, round(draws.uniform(*side) * height)))
    box_w = min(width, max(1, round(draws.uniform(*side) * width)))
    if placement == "corner":
        top, left = draws.below(height), draws.below(width)
        return top, left, min(box_h, height - top), min(box_w, width - left)
    if placement != "inside":
        raise VitsslError(f"unknown rectangle placement {placement!r}; use 'corner' or 'inside'")
    top = draws.below(height - box_h + 1)
    left = draws.below(width - box_w + 1)
    return top, left, box_h, box_w


def _check_placement(placement: str) -> None:
    if placement not in PLACEMENTS:
        raise VitsslError(f"rectangle placement must be 'corner' or 'inside', got {placement!r}")


def _box_mask(height: int, width: int, box: tuple[int, int, int, int]) -> Tensor:
    top, left, box_h, box_w = box
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[top : top + box_h, left : left + box_w] = True
    return mask


def rectangles_until(
    height: int,
    width: int,
    side: tuple[float, float],
    area: tuple[float, float],
    draws: Draws,
    placement: Placement = "inside",
) -> Tensor:
    """Union of random rectangles (sides in ``side``, placed as :func:`sample_box` says), added until it covers a
    fraction of the image drawn uniformly in ``area`` (so the covered fraction exceeds the target by at most one
    rectangle)."""
    target = draws.uniform(*area)
    mask = torch.zeros(height, width, dtype=torch.bool)
    covered = 0
    for _ in range(_MAX_RECTANGLES):
        if covered >= target * height * width:
            break
        top, left, box_h, box_w = sample_box(height, width, side, draws, placement)
        mask[top : top + box_h, left : left + box_w] = True
        covered = int(mask.sum())
    return mask


class Corruption(Protocol):
    """One corruption: ``corruption(image, draws, generator) -> (corrupted image, mask of touched pixels)``."""

    @property
    def p(self) -> float:
        """Probability of applying it to a view."""
        ...

    def __call__(self, image: Tensor, draws: Draws, generator: torch.Generator) -> tuple[Tensor, Tensor]: ...


@dataclass(frozen=True)
class GrayscalePatch:
    """One rectangle replaced by the per-pixel mean of its three channels (SiT corruption 1).

    Attributes:
        p: Probability of applying it to a view.
        side: Range of the rectangle's sides as fractions of the image side (SiT: 5% up to the whole side).
        placement: ``"inside"`` or ``"corner"`` (the authors' clipped rectangles), see :func:`sample_box`.
    """

    p: float = 1.0
    side: tuple[float, float] = (0.05, 1.0)
    placement: Placement = "inside"

    def __post_init__(self) -> None:
        _check_p("grayscale patch probability", self.p)
        _check_pair("grayscale patch side", self.side, 0.0, 1.0, low_open=True)
        _check_placement(self.placement)

    def __call__(self, image: Tensor, draws: Draws, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        height, width = image.shape[-2:]
        mask = _box_mask(height, width, sample_box(height, width, self.side, draws, self.placement))
        grey = image.mean(dim=0, keepdim=True).expand_as(image)
        return torch.where(mask, grey, image), mask


def gaussian_kernel1d(kernel_size: int, sigma: float) -> Tensor:
    """Normalised 1-D Gaussian weights of an odd ``kernel_size``."""
    x = torch.arange(kernel_size, dtype=torch.float32) - (kernel_size - 1) / 2
    weights = torch.exp(-0.5 * (x / sigma) ** 2)
    return weights / weights.sum()


def gaussian_blur_tensor(image: Tensor, kernel_size: int, sigma: float) -> Tensor:
    """Separable Gaussian blur of a (C, H, W) image, borders replicated."""
    k = gaussian_kernel1d(kernel_size, sigma).to(image)
    c, pad = image.shape[0], kernel_size // 2
    x = F.pad(image.unsqueeze(0), (pad, pad, pad, pad), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return x.squeeze(0)


@dataclass(frozen=True)
class BlurPatch:
    """One rectangle Gaussian-blurred (SiT corruption 2); the rest of the image is untouched.

    Attributes:
        p: Probability of applying it to a view.
        side: Range of the rectangle's sides as fractions of the image side.
        kernel: Range of the (odd) kernel size, drawn uniformly among the odd sizes in it (SiT: 3..15).
        sigma: Range of the Gaussian's standard deviation in pixels (SiT: 0.1..5.1).
        placement: ``"inside"`` or ``"corner"`` (the authors' clipped rectangles), see :func:`sample_box`.
    """

    p: float = 1.0
    side: tuple[float, float] = (0.05, 1.0)
    kernel: tuple[int, int] = (3, 15)
    sigma: tuple[float, float] = (0.1, 5.1)
    placement: Placement = "inside"

    def __post_init__(self) -> None:
        _check_p("blur patch probability", self.p)
        _check_pair("blur patch side", self.side, 0.0, 1.0, low_open=True)
        _check_pair("blur patch sigma", self.sigma, 0.0, math.inf, low_open=True)
        _check_placement(self.placement)
        lo, hi = self.kernel
        if not (len(self.kernel) == 2 and 1 <= lo <= hi and lo % 2 == 1 and hi % 2 == 1):
            raise VitsslError(f"blur patch kernel must be two odd sizes 1 <= min <= max, got {list(self.kernel)}")

    def __call__(self, image: Tensor, draws: Draws, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        height, width = image.shape[-2:]
        mask = _box_mask(height, width, sample_box(height, width, self.side, draws, self.placement))
        kernel_size = self.kernel[0] + 2 * draws.below((self.kernel[1] - self.kernel[0]) // 2 + 1)
        sigma = draws.uniform(*self.sigma)
        # The whole image is blurred so that the rectangle's border pixels mix with their true neighbours.
        return torch.where(mask, gaussian_blur_tensor(image, kernel_size, sigma), image), mask


@dataclass(frozen=True)
class RandomDrop:
    """Rectangles filled with Gaussian noise or the mean colour until a random area (SiT corruption 3).

    Attributes:
        p: Probability of applying it to a view.
        side: Range of the rectangles' sides as fractions of the image side (SiT: 5%..25%).
        area: Range of the target covered fraction of the image, drawn uniformly (SiT: 0..0.3; the masked
            variant: at least 0.5).
        fill: "noise": each channel drawn from N(mean, std) of the normalisation, i.e. N(0, 1) after normalising;
            "zeros": the normalisation mean, i.e. 0 after normalising (the masked variant's zeroing).
        mean: Per-channel normalisation mean of [0, 1] pixels.
        std: Per-channel normalisation standard deviation.
        placement: ``"inside"`` or ``"corner"`` (the authors' clipped rectangles), see :func:`sample_box`.
    """

    p: float = 1.0
    side: tuple[float, float] = (0.05, 0.25)
    area: tuple[float, float] = (0.0, 0.3)
    fill: Literal["noise", "zeros"] = "noise"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    placement: Placement = "inside"

    def __post_init__(self) -> None:
        _check_p("random drop probability", self.p)
        _check_pair("random drop side", self.side, 0.0, 1.0, low_open=True)
        _check_pair("random drop area", self.area, 0.0, 1.0)
        if self.fill not in ("noise", "zeros"):
            raise VitsslError(f"random drop fill must be 'noise' or 'zeros', got {self.fill!r}")
        _check_placement(self.placement)

    def __call__(self, image: Tensor, draws: Draws, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        mask = rectangles_until(image.shape[-2], image.shape[-1], self.side, self.area, draws, self.placement)
        mean = torch.tensor(self.mean, dtype=image.dtype).view(3, 1, 1)
        if self.fill == "zeros":
            filler = mean.expand_as(image)
        else:
            std = torch.tensor(self.std, dtype=image.dtype).view(3, 1, 1)
            filler = mean + std * torch.randn(image.shape, generator=generator, dtype=image.dtype)
        return torch.where(mask, filler, image), mask


@dataclass(frozen=True)
class RandomReplace:
    """Rectangles copied from the same place of another image of the batch (SiT corruption 4).

    Called on one image it only draws the mask and returns the image unchanged: the pixels are pasted by
    :func:`replace_in_batch` when the batch is collated, so no second file is read.

    Attributes:
        p: Probability of applying it to a view.
        side: Range of the rectangles' sides as fractions of the image side.
        area: Range of the target covered fraction (SiT: 0..0.3; the masked variant: at least 0.3).
        placement: ``"inside"`` or ``"corner"`` (the authors' clipped rectangles), see :func:`sample_box`.
    """

    p: float = 1.0
    side: tuple[float, float] = (0.05, 0.25)
    area: tuple[float, float] = (0.0, 0.3)
    placement: Placement = "inside"

    def __post_init__(self) -> None:
        _check_p("random replace probability", self.p)
        _check_pair("random replace side", self.side, 0.0, 1.0, low_open=True)
        _check_pair("random replace area", self.area, 0.0, 1.0)
        _check_placement(self.placement)

    def __call__(self, image: Tensor, draws: Draws, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        mask = rectangles_until(image.shape[-2], image.shape[-1], self.side, self.area, draws, self.placement)
        return image, mask


def replace_in_batch(views: Tensor, donors: Tensor, masks: Tensor, shift: int = 1) -> Tensor:
    """Paste, inside ``masks``, the pixels of another image of the batch (the one ``shift`` rows further,
    cyclically), as SiT's random replace.

    Args:
        views: (B, C, H, W) corrupted views.
        donors: (B, C, H, W) the images to copy from (the clean views: the donor's own corruption stays its own).
        masks: (B, H, W) boolean masks drawn by :class:`RandomReplace`.
        shift: Which other row donates (1: the next one); with B = 1 there is no other image and nothing changes.

    Returns:
        A new (B, C, H, W) tensor.
    """
    if views.shape[0] < 2 or not bool(masks.any()):
        return views
    donor = torch.roll(donors, shifts=-shift, dims=0)
    return torch.where(masks.unsqueeze(1), donor, views)


def replace_within_pairs(views: Tensor, donors: Tensor, masks: Tensor) -> Tensor:
    """SiT's random replace with a donor that does not depend on the batch size: rows 2k and 2k + 1 donate to each
    other (with an odd batch, the last row takes the next row cyclically, i.e. the first one).

    Since every process holds whole pairs of the global batch (see :class:`~vitssl.data.loading.sampler.EpochSampler`),
    the replaced pixels are the same with one process or several.
    """
    b = views.shape[0]
    if b < 2 or not bool(masks.any()):
        return views
    donor_rows = torch.arange(b) ^ 1  # 0<->1, 2<->3, ...
    if b % 2:
        donor_rows[-1] = 0
    return torch.where(masks.unsqueeze(1), donors[donor_rows.to(donors.device)], views)


@dataclass(frozen=True)
class ColourDistortion:
    """Whole-view colour distortion: brightness, contrast and saturation factors uniform in [1 - s, 1 + s].

    It touches every pixel, so its mask is the whole view.

    Attributes:
        p: Probability of applying it to a view.
        strength: s, the strength of each of the three adjustments.
    """

    p: float = 0.0
    strength: float = 0.4

    def __post_init__(self) -> None:
        _check_p("colour distortion probability", self.p)
        if not 0.0 <= self.strength <= 1.0:
            raise VitsslError(f"colour distortion strength must lie in [0, 1], got {self.strength}")

    def __call__(self, image: Tensor, draws: Draws, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        s = self.strength
        brightness, contrast, saturation = (draws.uniform(1 - s, 1 + s) for _ in range(3))
        out = (image * brightness).clamp(0, 1)
        grey = out.mean(dim=0, keepdim=True)
        out = (grey.mean() + contrast * (out - grey.mean())).clamp(0, 1)
        grey = out.mean(dim=0, keepdim=True)
        out = (grey + saturation * (out - grey)).clamp(0, 1)
        return out, torch.ones(image.shape[-2:], dtype=torch.bool)


@dataclass
class Corrupted:
    """A corrupted view: the image, the mask of touched pixels, and the mask still to be replaced in the batch."""

    image: Tensor
    mask: Tensor
    replace_mask: Tensor


@dataclass
class CorruptionPipeline:
    """Applies corruptions in order, each with its own probability; the masks are combined.

    One chance is drawn per corruption before any is applied, so the stream of random numbers does not depend on
    which ones fire. A :class:`RandomReplace` contributes its mask to ``replace_mask`` (pasted at collation).

    Attributes:
        steps: The corruptions, in order.
        replace_excludes_drop: When a random replace fires, skip every random drop: the masked variant's
            either/or (docs/methods.md section 3.4: zeroed rectangles, or with p = 0.5 pasted ones instead).
    """

    steps: list[Corruption] = field(default_factory=list)
    replace_excludes_drop: bool = False

    def __call__(self, image: Tensor, draws: Draws, generator: torch.Generator) -> Corrupted:
        fire = [draws.chance(step.p) for step in self.steps]
        replacing = any(f and isinstance(s, RandomReplace) for f, s in zip(fire, self.steps, strict=True))
        mask = torch.zeros(image.shape[-2:], dtype=torch.bool)
        replace_mask = torch.zeros_like(mask)
        for fires, step in zip(fire, self.steps, strict=True):
            if not fires or (replacing and self.replace_excludes_drop and isinstance(step, RandomDrop)):
                continue
            image, touched = step(image, draws, generator)
            if isinstance(step, RandomReplace):
                replace_mask |= touched
            else:
                mask |= touched
        return Corrupted(image=image, mask=mask, replace_mask=replace_mask)
