"""Single image files as network inputs, for the commands that draw on images the user passes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from vitssl.data.bad_inputs import entry, file_reason, note
from vitssl.data.images import UnreadableImageError, load_rgb
from vitssl.errors import VitsslError

SAMPLE_IMAGES = "synthetic"
"""An image argument that names no file but this stands for the first test image of each class of the built-in
synthetic set (generated offline on first use), so that the demo can draw pictures without a path."""


def expand_images(args: Sequence[str | Path], cache_dir: str | Path) -> list[Path]:
    """Image arguments as files: :data:`SAMPLE_IMAGES` (when no such file exists) becomes the synthetic set's
    first test image of each class (ten images); a folder becomes every image below it (sorted,
    :func:`vitssl.data.discovery.find_images`); anything else is kept as given."""
    paths: list[Path] = []
    for arg in args:
        if str(arg) == SAMPLE_IMAGES and not Path(arg).exists():
            from vitssl.data.synthetic import ensure_synthetic

            test = ensure_synthetic(cache_dir) / "test"
            paths += [min(folder.glob("*.png")) for folder in sorted(test.iterdir()) if folder.is_dir()]
        elif Path(arg).is_dir():
            from vitssl.data.discovery import find_images

            found = find_images(Path(arg))
            if not found:
                raise VitsslError(f"no images found under {arg}; pass a folder of images or image files")
            paths += found
        else:
            paths.append(Path(arg))
    return paths


def load_image(path: str | Path) -> Image.Image:
    """An RGB image, or a one-line error naming the file when it is missing or not an image."""
    path = Path(path)
    if not path.is_file():
        raise VitsslError(f"image {path} does not exist; pass the path of an image file")
    return load_rgb(path)


def load_readable(paths: Sequence[str | Path]) -> list[tuple[Path, Image.Image]]:
    """The readable ones of ``paths`` with their RGB images, in order.

    An unreadable file is left out and reported (:func:`vitssl.data.bad_inputs.note`: counted in the command's
    summary line, or a one-line error under ``--strict``); a missing file is a one-line error, as is a list of
    which none is readable.
    """
    loaded, bad = [], []
    for path in map(Path, paths):
        try:
            loaded.append((path, load_image(path)))
        except UnreadableImageError:
            bad.append(entry(path, file_reason(path)))
            note(bad[-1])
    if not loaded:
        raise VitsslError(
            f"none of the {len(paths)} images given is readable (first: {bad[0]}); pass image files that open"
        )
    return loaded


def image_to_tensor(
    image: Image.Image, mean: list[float], std: list[float], multiple: int, resize: int | None = None
) -> Tensor:
    """A (1, 3, H, W) normalised tensor; the short side optionally resized, both sides cropped to `multiple`."""
    if resize:
        w, h = image.size
        scale = resize / min(w, h)
        image = image.resize(
            (max(multiple, round(w * scale)), max(multiple, round(h * scale))), Image.Resampling.BICUBIC
        )
    w, h = image.size
    cw, ch = (w // multiple) * multiple, (h // multiple) * multiple
    if cw == 0 or ch == 0:
        raise VitsslError(f"image of {w}x{h} px is smaller than one {multiple} px patch; use --resize")
    left, top = (w - cw) // 2, (h - ch) // 2
    image = image.crop((left, top, left + cw, top + ch))
    array = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    return ((array - m) / s).unsqueeze(0)
