"""Undoing the per-channel normalisation of image tensors, for drawing them.

The one place that turns normalised (B, 3, H, W) tensors back into pixels: evaluation pictures, correspondence
views and SiT's reconstruction grids all go through here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def denormalise(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(B, 3, H, W) normalised images -> (B, H, W, 3) float32 array in [0, 1].

    Args:
        images: Images normalised as ``(pixels - mean) / std``, on any device, with or without gradients.
        mean: Per-channel mean used to normalise them.
        std: Per-channel standard deviation used to normalise them.
    """
    m = torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1)
    pixels = (images.detach().cpu().float() * s + m).clamp(0, 1)
    return pixels.permute(0, 2, 3, 1).numpy()


def to_uint8(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(B, 3, H, W) normalised images -> (B, H, W, 3) uint8 pixels, rounded to the nearest level.

    Rounding (not truncating) makes the round trip exact for images that came from 8-bit pixels, which the
    flip-correspondence views rely on.
    """
    return (denormalise(images, mean, std) * 255 + 0.5).astype(np.uint8)


def to_image(view: Tensor, mean: Sequence[float], std: Sequence[float]) -> Image.Image:
    """One normalised (3, H, W) view -> an RGB PIL image (rounded as :func:`to_uint8`)."""
    return Image.fromarray(to_uint8(view.unsqueeze(0), mean, std)[0])
