"""Pictures of SiT's reconstruction task: rows of clean / corrupted / reconstructed views and the corruption mask
(Atito et al. 2021, arXiv 2104.03602, figure 2 shows the same rows)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor

from vitssl.data.views.normalise import to_uint8

__all__ = ["reconstruction_grid", "save_reconstruction_grid"]

_MIN_SIDE = 96  # small views (32 px) are enlarged with nearest-neighbour so a pixel stays a visible square
_GAP = 2


def reconstruction_grid(
    clean: Tensor,
    corrupted: Tensor,
    reconstructed: Tensor,
    mask: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
) -> Image.Image:
    """One column per image, four rows: clean target, corrupted input, reconstruction, mask (white = corrupted).

    Args:
        clean: (N, 3, H, W) clean views, normalised.
        corrupted: (N, 3, H, W) corrupted views, normalised.
        reconstructed: (N, 3, H, W) the network's output, normalised.
        mask: (N, H, W) boolean corruption masks.
        mean: Normalisation mean (to undo it).
        std: Normalisation standard deviation.

    Returns:
        An RGB image.
    """
    masks = mask.detach().cpu().bool().unsqueeze(-1).expand(*mask.shape, 3).numpy().astype(np.uint8) * 255
    rows = [to_uint8(x, mean, std) for x in (clean, corrupted, reconstructed)] + [masks]
    n, h, w, _ = rows[0].shape
    scale = max(1, -(-_MIN_SIDE // max(h, w)))
    cell_h, cell_w = h * scale, w * scale
    canvas = Image.new("RGB", (n * (cell_w + _GAP) + _GAP, len(rows) * (cell_h + _GAP) + _GAP), (255, 255, 255))
    for r, row in enumerate(rows):
        for i in range(n):
            tile = Image.fromarray(row[i]).resize((cell_w, cell_h), Image.Resampling.NEAREST)
            canvas.paste(tile, (_GAP + i * (cell_w + _GAP), _GAP + r * (cell_h + _GAP)))
    return canvas


def save_reconstruction_grid(
    clean: Tensor,
    corrupted: Tensor,
    reconstructed: Tensor,
    mask: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    path: Path,
) -> Path:
    """:func:`reconstruction_grid` written as a PNG at ``path`` (folders created); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    reconstruction_grid(clean, corrupted, reconstructed, mask, mean, std).save(path)
    return path
