"""Decoding image files of any common mode into 8-bit RGB.

Self-supervised pretraining reads whatever a user's folder holds: scans in 16-bit grayscale, PNGs with alpha,
palette GIFs, CMYK JPEGs from print workflows. Every such file must arrive at the view transform as the same
thing (8-bit RGB) with its intensities preserved, or the model silently learns from wrong pixels.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from vitssl.errors import VitsslError

__all__ = [
    "IMAGE_EXTENSIONS",
    "UnreadableImageError",
    "UnreadableImageWarning",
    "is_image_file",
    "load_rgb",
    "to_rgb",
]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
"""File suffixes (lower case, with the dot) treated as images; matching is case-insensitive."""

_WHITE = (255, 255, 255, 255)
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_INT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
_UINT16_MAX = 65535


class UnreadableImageError(VitsslError):
    """A file could not be decoded as an image (corrupt, truncated or not an image at all)."""


class UnreadableImageWarning(UserWarning):
    """Issued when a dataset skips a file that cannot be decoded."""


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def load_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """Open and fully decode an image file, returning it as 8-bit RGB.

    See :func:`to_rgb` for how each PIL mode is converted. Animated files yield their first frame.

    Args:
        path: The image file.

    Returns:
        A decoded ``PIL.Image.Image`` in mode ``"RGB"``.

    Raises:
        UnreadableImageError: The file is missing, corrupt, truncated or not an image; the message names it.
    """
    try:
        with Image.open(path) as image:
            # Decoding here (not lazily) is what surfaces truncation: PIL only notices on load().
            image.load()
            return to_rgb(image)
    except Exception as err:  # decoders of untrusted files raise many exception types, not just OSError
        raise UnreadableImageError(
            f"cannot read image {os.fspath(path)!r} ({type(err).__name__}: {err}); delete or replace the file"
        ) from err


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert a decoded image of any PIL mode to 8-bit RGB without distorting intensities.

    * transparent images (RGBA, LA, PA, or a palette/grey/RGB image with a transparency key) are composited
      over white, the background a viewer shows, rather than letting the hidden colour under alpha 0 leak
      through;
    * 16- and 32-bit integer images are scaled from their bit range (see :func:`_integer_to_uint8`);
    * float images are scaled from [0, 1] (see :func:`_float_to_uint8`);
    * every other mode (1, L, P, CMYK, YCbCr, ...) uses PIL's own conversion.

    Args:
        image: A loaded PIL image.

    Returns:
        An image in mode ``"RGB"`` with the same size.
    """
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode in _INT_MODES:
        return _grey_array_to_rgb(_integer_to_uint8(np.asarray(image)))
    if mode == "F":
        return _grey_array_to_rgb(_float_to_uint8(np.asarray(image, dtype=np.float64)))
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE)
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _grey_array_to_rgb(grey: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(grey, dtype=np.uint8)).convert("RGB")


def _integer_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map integer grey levels to 0..255.

    Values already in 0..255 are kept (8-bit data stored in a wide mode). Values in 0..65535 are treated as
    16-bit data and scaled by 255/65535 with rounding, so a dim 16-bit scan stays dim instead of being
    stretched or clipped to white. Anything else (negative or above 16 bits) is min-max scaled: no fixed range
    is meaningful there.
    """
    values = values.astype(np.int64)
    low, high = int(values.min()), int(values.max())
    if low >= 0 and high <= 255:
        return values.astype(np.uint8)
    if low >= 0 and high <= _UINT16_MAX:
        return ((values * 255 + _UINT16_MAX // 2) // _UINT16_MAX).astype(np.uint8)
    return _min_max_to_uint8(values.astype(np.float64))


def _float_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map float grey levels to 0..255: [0, 1] data is scaled by 255, [0, 255] data kept, else min-max."""
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    # Values are non-negative in both fixed ranges, so adding 0.5 and truncating rounds to nearest.
    if low >= 0.0 and high <= 1.0:
        return (values * 255.0 + 0.5).astype(np.uint8)
    if low >= 0.0 and high <= 255.0:
        return (values + 0.5).astype(np.uint8)
    return _min_max_to_uint8(values)


def _min_max_to_uint8(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.rint((values - low) * (255.0 / (high - low))).astype(np.uint8)
