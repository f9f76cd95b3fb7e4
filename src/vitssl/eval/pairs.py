"""Image / mask pairs for the segmentation-style evaluations (attention Jaccard, linear segmentation probe).

Two sources:

* ``synthetic`` (or ``synthetic:train`` / ``synthetic:test``): the built-in shapes with their foreground masks
  (``<root>/masks/<split>/<class>/<i>.png``, 255 = shape); classes 0 = background, 1 = foreground.
* a folder ``ROOT`` holding ``ROOT/images/<name>.<ext>`` and ``ROOT/masks/<name>.png``: every mask pixel is a
  class index (0 = background), 255 means "ignore" (the PASCAL VOC convention). ``binary=True`` turns every
  non-zero class into foreground.

All pairs are loaded into memory as tensors at one size (short side resized, centre crop), which suits the small
evaluation sets these probes run on. A pair whose image or mask cannot be decoded is left out and reported
(:func:`vitssl.data.bad_inputs.note`: the command's summary line, or a one-line error under ``--strict``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from vitssl.data.bad_inputs import entry, file_reason, note
from vitssl.data.images import UnreadableImageError, is_image_file, load_rgb
from vitssl.data.sources.named import resolve_dataset
from vitssl.data.sources.subset import stratified_subset
from vitssl.data.sources.synthetic import mask_path
from vitssl.errors import VitsslError

IGNORE = 255


@dataclass
class Pairs:
    """Images (N, 3, S, S) normalised, masks (N, S, S) int64 class indices (255 = ignore), class count."""

    images: Tensor
    masks: Tensor
    num_classes: int
    source: str


def list_pairs(spec: str, role: str, cache_dir: str) -> tuple[list[tuple[Path, Path]], bool]:
    """(image, mask) paths of a spec, and whether its masks are 0/255 foreground masks."""
    name = spec.partition(":")[0]
    if name == "synthetic":
        root, _ = resolve_dataset(spec, role, cache_dir)
        images = sorted(p for p in root.rglob("*.png"))
        return [(p, mask_path(p)) for p in images], True
    root = Path(spec).expanduser()
    if not (root / "images").is_dir() or not (root / "masks").is_dir():
        raise VitsslError(
            f"{spec} is not 'synthetic' nor a folder with images/ and masks/ sub-folders; lay it out as "
            f"{root}/images/<name>.jpg and {root}/masks/<name>.png"
        )
    masks = {p.stem: p for p in (root / "masks").iterdir() if p.suffix.lower() == ".png"}
    pairs = [(p, masks[p.stem]) for p in sorted((root / "images").iterdir()) if is_image_file(p) and p.stem in masks]
    if not pairs:
        raise VitsslError(f"no image in {root}/images has a mask of the same name in {root}/masks (PNG)")
    return pairs, False


def _fit(image: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    w, h = image.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        image = image.resize((nw, nh), resample)
    left, top = (nw - size) // 2, (nh - size) // 2
    return image.crop((left, top, left + size, top + size))


def _read_pair(image_path: Path, mask_file: Path) -> tuple[Image.Image, Image.Image] | None:
    """The RGB image and the grey mask of a pair, or None (reported with :func:`note`) when one cannot be decoded."""
    decoded = []
    for path, read in ((image_path, load_rgb), (mask_file, _load_mask)):
        try:
            decoded.append(read(path))
        except UnreadableImageError:
            note(entry(path, file_reason(path)))
            return None
    return decoded[0], decoded[1]


def _load_mask(path: Path) -> Image.Image:
    """A mask file as an 8-bit grey image (class indices), or UnreadableImageError naming it."""
    try:
        with Image.open(path) as mask:
            return mask.convert("L")
    except Exception as err:  # decoders of untrusted files raise many exception types
        raise UnreadableImageError(f"cannot read mask {path} ({type(err).__name__}: {err})") from err


def load_pairs(
    spec: str,
    role: str,
    size: int,
    mean: list[float],
    std: list[float],
    cache_dir: str = "~/.cache/vitssl",
    max_images: int | None = None,
    binary: bool = False,
    seed: int = 0,
    semantic: bool = False,
) -> Pairs:
    """Load image/mask pairs at `size` x `size` (bicubic images, nearest-neighbour masks).

    Args:
        spec: ``synthetic[:split]`` or a folder with images/ and masks/.
        role: "train" or "val" (picks the synthetic split: train or test).
        size: Side of the square crop; must be a multiple of the backbone's patch for the probes.
        mean, std: Normalisation of the images.
        cache_dir: Where named datasets live.
        max_images: Keep a fixed random subset of this many pairs.
        binary: Map every non-zero, non-ignored class to 1.
        seed: Seed of that subset.
        semantic: Synthetic data only: label foreground pixels with their image's shape class (1..10, 0 is
            background) instead of 1, which asks the probe for what the object is, not only where.
    """
    paths, foreground_masks = list_pairs(spec, role, cache_dir)
    if semantic and not foreground_masks:
        raise VitsslError("--semantic is for the synthetic dataset; a folder's masks carry their own classes")
    class_names = sorted({image.parent.name for image, _ in paths})
    if max_images is not None and max_images < len(paths):
        keep = stratified_subset([0] * len(paths), max_images, seed)
        paths = [paths[i] for i in sorted(keep)]
    m = np.asarray(mean, dtype=np.float32)[:, None, None]
    s = np.asarray(std, dtype=np.float32)[:, None, None]
    images, masks = [], []
    for image_path, mask_file in paths:
        if not mask_file.is_file():
            raise VitsslError(
                f"mask {mask_file} of {image_path} is missing; regenerate the dataset or remove the image"
            )
        read = _read_pair(image_path, mask_file)
        if read is None:
            continue
        image = _fit(read[0], size, Image.Resampling.BICUBIC)
        mask = np.asarray(_fit(read[1], size, Image.Resampling.NEAREST), dtype=np.int64)
        if foreground_masks:
            label = class_names.index(image_path.parent.name) + 1 if semantic else 1
            mask = (mask > 127).astype(np.int64) * label
        elif binary:
            mask = np.where(mask == IGNORE, IGNORE, (mask > 0).astype(np.int64))
        images.append((np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0 - m) / s)
        masks.append(mask)
    if not images:
        raise VitsslError(f"none of the {len(paths)} image/mask pairs of {spec} is readable; check its files")
    masks_t = torch.from_numpy(np.stack(masks))
    valid = masks_t[masks_t != IGNORE]
    num_classes = int(valid.max()) + 1 if len(valid) else 1
    if semantic:
        num_classes = len(class_names) + 1
    return Pairs(torch.from_numpy(np.stack(images)), masks_t, max(num_classes, 2), spec)
