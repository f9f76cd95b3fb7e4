"""DINO's position-embedding interpolation (Caron et al. 2021, arXiv 2104.14294, appendix: "we interpolate the
position embeddings" to evaluate at other resolutions), as a pure function of the native embedding and the grid.

The released DINO networks were evaluated (k-NN, linear, attention maps, video segmentation at 480 px) with a
specific resampling: the (sqrtN x sqrtN) patch grid of embeddings is resized bicubically with a *scale factor*
of ``(h0 + 0.1) / sqrtN`` by ``(w0 + 0.1) / sqrtN`` (the 0.1 keeps the floor of the output size at h0, w0 in
floating point), without antialiasing and without ``align_corners``; the native embedding is used unchanged when
the grid is the native one. timm's ``resample_abs_pos_embed`` resizes to an explicit *size* with
``antialias=True``, which samples the source grid at other coordinates, so the two differ off the native grid.
Reproducing the authors' numbers from their weights needs this version.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from vitssl.errors import VitsslError

__all__ = ["dino_pos_embed"]


def dino_pos_embed(pos_embed: Tensor, grid: tuple[int, int], num_prefix_tokens: int = 1) -> Tensor:
    """The position embedding for a ``grid`` = (rows, cols) of patches, resampled the way DINO does.

    Args:
        pos_embed: (1, prefix + N, D), the native embedding; its N patch positions form a square grid.
        grid: (h0, w0) = (H // patch, W // patch) of the input.
        num_prefix_tokens: Leading positions that belong to the [CLS] (and register) tokens: kept as they are.

    Returns:
        (1, prefix + h0 * w0, D); ``pos_embed`` itself when ``grid`` is the native grid.
    """
    prefix, patches = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    n, dim = patches.shape[1], patches.shape[2]
    side = int(math.isqrt(n))
    if side * side != n:
        raise VitsslError(f"a position embedding of {n} patch positions is not a square grid; use timm interpolation")
    h0, w0 = grid
    if (h0, w0) == (side, side):
        return pos_embed
    square = patches.reshape(1, side, side, dim).permute(0, 3, 1, 2)
    resized = F.interpolate(
        square.float(),
        scale_factor=((h0 + 0.1) / math.sqrt(n), (w0 + 0.1) / math.sqrt(n)),
        mode="bicubic",
    ).to(pos_embed.dtype)
    if tuple(resized.shape[-2:]) != (h0, w0):  # the 0.1 offset guarantees this; a failure means another formula
        raise VitsslError(f"DINO interpolation gave a {tuple(resized.shape[-2:])} grid for {grid}; please report")
    return torch.cat((prefix, resized.permute(0, 2, 3, 1).reshape(1, h0 * w0, dim)), dim=1)
