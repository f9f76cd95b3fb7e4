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


DEFAULT_MAX_SIDE = 800
"""The longest side a photo keeps before its patches are drawn: a 12-megapixel photo at its own resolution would
give tens of thousands of patches (an explicit attention map of gigabytes) and no clearer picture."""


def expand_images(args: Sequence[str | Path], cache_dir: str | Path) -> list[Path]:
    """Image arguments as files: :data:`SAMPLE_IMAGES` (when no such file exists) becomes the synthetic set's
    first test image of each class (ten images); a folder becomes every image file below it (any depth, sorted;
    see :data:`vitssl.data.images.IMAGE_EXTENSIONS`); anything else is kept as given (a missing file is reported
    when it is loaded)."""
    from vitssl.data.sources.discovery import find_images

    paths: list[Path] = []
    for arg in args:
        path = Path(arg)
        if str(arg) == SAMPLE_IMAGES and not path.exists():
            from vitssl.data.sources.synthetic import ensure_synthetic

            test = ensure_synthetic(cache_dir) / "test"
            paths += [min(folder.glob("*.png")) for folder in sorted(test.iterdir()) if folder.is_dir()]
        elif path.is_dir():
            found = find_images(path)
            if not found:
                raise VitsslError(f"folder {path} holds no image files; pass a folder with photos or image files")
            paths += found
        else:
            paths.append(path)
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


def fit_size(width: int, height: int, resize: int | None = None, max_side: int | None = None) -> tuple[int, int]:
    """The (width, height) an image is scaled to before cropping, aspect ratio kept.

    ``resize`` sets the short side (up or down) and, when given, takes precedence over ``max_side``: the user
    asked for a size. Otherwise ``max_side`` only shrinks: an image whose longer side exceeds it is scaled so that
    the longer side equals it; smaller images keep their own resolution.
    """
    if resize:
        scale = resize / min(width, height)
    elif max_side and max(width, height) > max_side:
        scale = max_side / max(width, height)
    else:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def image_to_tensor(
    image: Image.Image,
    mean: list[float],
    std: list[float],
    multiple: int,
    resize: int | None = None,
    max_side: int | None = None,
) -> Tensor:
    """A (1, 3, H, W) normalised tensor: scaled as :func:`fit_size` says, then centre-cropped so that both sides
    are multiples of `multiple` (the patch: a 640x480 photo at patch 16 gives a 40x30 grid)."""
    w, h = image.size
    size = fit_size(w, h, resize, max_side)
    if size != (w, h):
        size = (max(multiple, size[0]), max(multiple, size[1]))
        image = image.resize(size, Image.Resampling.BICUBIC)
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
