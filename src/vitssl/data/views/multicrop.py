"""DINO's multi-crop views and the deterministic evaluation transform.

Multi-crop (DINO, Caron et al. 2021, arXiv 2104.14294, section 3.1 and appendix): every image yields two
global crops covering much of it and several small local crops; the student sees all of them, the teacher only
the globals, which teaches local-to-global correspondence. Each crop is an independent random resized crop
followed by photometric augmentation whose strengths the :class:`CropSpec` holds.

All randomness is drawn from the ``torch.Generator`` passed with each image (see :mod:`vitssl.data.seeding`),
so the same (seed, epoch, index) always gives the same views, whichever worker or process builds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from vitssl.config import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD, CropsConfig
from vitssl.data.views import crop_ops
from vitssl.errors import VitsslError

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CropSpec",
    "EvalTransform",
    "MultiCropTransform",
    "augment_view",
    "crop_spec",
    "dino_crops",
    "dino_crops_from_config",
]


_BICUBIC = Image.Resampling.BICUBIC
# CropSpec fields that dino_crops may override for every crop; size, scale, blur_p and solarize_p are what
# distinguishes the crops and have their own arguments.
_SHARED_FIELDS = (
    "ratio",
    "flip_p",
    "jitter_p",
    "brightness",
    "contrast",
    "saturation",
    "hue",
    "grayscale_p",
    "blur_radius",
    "solarize_threshold",
)


def _check_range(name: str, value: tuple[float, float], low: float, high: float | None = None) -> None:
    ok = len(value) == 2 and low < value[0] <= value[1] and (high is None or value[1] <= high)
    if not ok:
        top = "" if high is None else f" and at most {high}"
        raise VitsslError(f"crop {name} must be a pair (min, max) with {low} < min <= max{top}, got {value}")


@dataclass(frozen=True)
class CropSpec:
    """One random view: crop geometry and photometric augmentation strengths (DINO's defaults).

    Attributes:
        size: Output side in pixels (square crops).
        scale: Range of the crop area as a fraction of the image area.
        ratio: Range of the crop aspect ratio (width / height), sampled log-uniformly.
        flip_p: Probability of a horizontal flip.
        jitter_p: Probability of colour jitter.
        brightness: Brightness jitter strength (factor in [1 - x, 1 + x]).
        contrast: Contrast jitter strength.
        saturation: Saturation jitter strength.
        hue: Hue jitter strength (shift in [-x, x] turns, at most 0.5).
        grayscale_p: Probability of converting to grayscale.
        blur_p: Probability of Gaussian blur.
        blur_radius: Range of the blur radius in pixels (uniform).
        solarize_p: Probability of solarization.
        solarize_threshold: Pixel values at or above it are inverted.
    """

    size: int
    scale: tuple[float, float]
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_radius: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    solarize_threshold: int = 128

    def __post_init__(self) -> None:
        if self.size < 1:
            raise VitsslError(f"crop size must be a positive number of pixels, got {self.size}")
        _check_range("scale", self.scale, 0.0)
        _check_range("ratio", self.ratio, 0.0)
        _check_range("blur_radius", self.blur_radius, 0.0)
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise VitsslError(f"crop {name} is a probability and must lie in [0, 1], got {value}")
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise VitsslError(f"crop {name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.hue <= 0.5:
            raise VitsslError(f"crop hue must lie in [0, 0.5], got {self.hue}")


def dino_crops(
    global_size: int = 224,
    global_scale: tuple[float, float] | None = None,
    local_count: int = 8,
    local_size: int | Sequence[int] = 96,
    local_scale: tuple[float, float] = (0.05, 0.4),
    **overrides: Any,
) -> list[CropSpec]:
    """DINO's multi-crop recipe (docs/methods.md section 1.1): two global crops, then ``local_count`` local crops.

    Global crop 1 is always blurred and never solarized; global crop 2 is blurred with p=0.1 and solarized
    with p=0.2; local crops are blurred with p=0.5.

    Args:
        global_size: Side of the global crops.
        global_scale: Area range of the global crops; default (0.4, 1.0), or (0.14, 1.0) without local crops
            as in DINO's single-crop setting.
        local_count: Number of local crops (0 disables multi-crop).
        local_size: Side of the local crops, or a list of sides used in turn (e.g. [96, 64]).
        local_scale: Area range of the local crops.
        **overrides: Values for the fields shared by all crops (``ratio``, ``flip_p``, ``jitter_p``,
            ``brightness``, ``contrast``, ``saturation``, ``hue``, ``grayscale_p``, ``blur_radius``,
            ``solarize_threshold``).

    Returns:
        The crops, globals first; a transform returns its views in this order.

    Raises:
        VitsslError: An unknown override, a negative count or an empty list of local sizes.
    """
    unknown = sorted(set(overrides) - set(_SHARED_FIELDS))
    if unknown:
        raise VitsslError(
            f"unknown crop setting(s) {', '.join(unknown)}; the settings shared by all crops are "
            f"{', '.join(_SHARED_FIELDS)}"
        )
    if local_count < 0:
        raise VitsslError(f"local_count must be >= 0, got {local_count}")
    sizes = [local_size] if isinstance(local_size, int) else list(local_size)
    if local_count > 0 and not sizes:
        raise VitsslError("local_size is an empty list; give one size or a list of sizes for the local crops")
    if global_scale is None:
        global_scale = (0.4, 1.0) if local_count > 0 else (0.14, 1.0)
    crops = [
        CropSpec(size=global_size, scale=global_scale, blur_p=1.0, solarize_p=0.0, **overrides),
        CropSpec(size=global_size, scale=global_scale, blur_p=0.1, solarize_p=0.2, **overrides),
    ]
    crops += [
        CropSpec(size=sizes[k % len(sizes)], scale=local_scale, blur_p=0.5, solarize_p=0.0, **overrides)
        for k in range(local_count)
    ]
    return crops


def augment_view(
    image: Image.Image, crop: CropSpec, draws: crop_ops.Draws, blur_and_solarize: bool = True
) -> Image.Image:
    """One random view of ``image``: bicubic random resized crop -> horizontal flip -> colour jitter -> grayscale
    -> Gaussian blur -> solarize, with the crop's probabilities and strengths.

    ``blur_and_solarize=False`` stops after grayscale without drawing for the last two (SiT's views, whose
    corruptions replace them), so each caller's stream of random numbers stays what it always was.
    """
    box = crop_ops.random_resized_crop_box(image.width, image.height, crop.scale, crop.ratio, draws)
    # Cropping through resize's box resamples once, from the original pixels, with antialiasing.
    view = image.resize((crop.size, crop.size), _BICUBIC, box=box)
    if draws.chance(crop.flip_p):
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if draws.chance(crop.jitter_p):
        view = crop_ops.color_jitter(view, crop.brightness, crop.contrast, crop.saturation, crop.hue, draws)
    if draws.chance(crop.grayscale_p):
        view = crop_ops.grayscale(view)
    if not blur_and_solarize:
        return view
    if draws.chance(crop.blur_p):
        view = crop_ops.gaussian_blur(view, draws.uniform(*crop.blur_radius))
    if draws.chance(crop.solarize_p):
        view = crop_ops.solarize(view, crop.solarize_threshold)
    return view


def crop_spec(crops: CropsConfig, size: int, scale: Sequence[float], **fixed: Any) -> CropSpec:
    """A :class:`CropSpec` with the photometric settings of the ``crops`` config section (one place that maps
    config keys to crop fields); ``fixed`` sets the remaining fields (e.g. ``blur_p``, ``solarize_p``)."""
    return CropSpec(
        size=size,
        scale=(float(scale[0]), float(scale[1])),
        jitter_p=crops.jitter_p,
        brightness=crops.brightness,
        contrast=crops.contrast,
        saturation=crops.saturation,
        hue=crops.hue,
        grayscale_p=crops.grayscale_p,
        blur_radius=(float(crops.blur_radius[0]), float(crops.blur_radius[1])),
        **fixed,
    )


def dino_crops_from_config(crops: CropsConfig) -> list[CropSpec]:
    """DINO's multi-crop views (:func:`dino_crops`) with the sizes, scales and strengths of a ``crops`` section."""
    shared = crop_spec(crops, crops.global_size, crops.global_scale)
    return dino_crops(
        global_size=crops.global_size,
        global_scale=shared.scale,
        local_count=crops.local_count,
        local_size=crops.local_size,
        local_scale=(float(crops.local_scale[0]), float(crops.local_scale[1])),
        **{
            name: getattr(shared, name)
            for name in _SHARED_FIELDS
            if name not in ("ratio", "flip_p", "solarize_threshold")
        },
    )


class MultiCropTransform:
    """Builds one normalised tensor per :class:`CropSpec` from an image and a generator.

    Per crop: bicubic random resized crop -> horizontal flip -> colour jitter (four adjustments in random
    order) -> grayscale -> Gaussian blur -> solarize -> tensor, normalised with ``mean``/``std``.

    Args:
        crops: The views to build, in output order (e.g. from :func:`dino_crops`).
        mean: Per-channel mean of [0, 1] pixels (e.g. :data:`IMAGENET_MEAN`).
        std: Per-channel standard deviation of [0, 1] pixels.
    """

    def __init__(self, crops: Sequence[CropSpec], mean: Sequence[float], std: Sequence[float]) -> None:
        if not crops:
            raise VitsslError("a multi-crop transform needs at least one crop")
        self.crops = list(crops)
        self._to_tensor = crop_ops.ToNormalizedTensor(mean, std)

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel normalisation mean."""
        return self._to_tensor.mean

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel normalisation standard deviation."""
        return self._to_tensor.std

    def __call__(self, image: Image.Image, generator: torch.Generator) -> list[torch.Tensor]:
        """The views of ``image``: float32 tensors of shape (3, size, size), in the order of ``crops``."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        draws = crop_ops.Draws(generator)
        return [self._to_tensor(augment_view(image, crop, draws)) for crop in self.crops]

    def __repr__(self) -> str:
        sizes = ", ".join(str(crop.size) for crop in self.crops)
        return f"{type(self).__name__}(sizes=[{sizes}], mean={self.mean}, std={self.std})"


class EvalTransform:
    """Deterministic evaluation view: bicubic resize of the short side, centre crop, normalise.

    Args:
        size: Side of the square output.
        mean: Per-channel mean of [0, 1] pixels.
        std: Per-channel standard deviation of [0, 1] pixels.
        resize: Short side after resizing, at least ``size``; default ``size`` (no border cropped away).
            ImageNet evaluation uses 256 for 224.
    """

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float], resize: int | None = None) -> None:
        self.size = size
        self.resize = resize or size
        if size < 1 or self.resize < size:
            raise VitsslError(f"eval resize ({self.resize}) must be >= eval size ({size}) >= 1")
        self._to_tensor = crop_ops.ToNormalizedTensor(mean, std)

    def __call__(self, image: Image.Image, generator: torch.Generator | None = None) -> torch.Tensor:
        """The (3, size, size) float32 view; ``generator`` is unused (it matches the dataset's call)."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        width, height = image.size
        # As torchvision's Resize(int): the short side becomes `resize`, the long side keeps the aspect ratio.
        if width <= height:
            new_w, new_h = self.resize, int(self.resize * height / width)
        else:
            new_w, new_h = int(self.resize * width / height), self.resize
        if (new_w, new_h) != (width, height):
            image = image.resize((new_w, new_h), _BICUBIC)
        left, top = round((new_w - self.size) / 2), round((new_h - self.size) / 2)
        return self._to_tensor(image.crop((left, top, left + self.size, top + self.size)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, resize={self.resize}, mean={self._to_tensor.mean})"
