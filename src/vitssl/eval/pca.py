"""Patch features of a set of images, their first principal components shown as RGB.

The visualisation of DINOv2 (Oquab et al. 2023, arXiv 2304.07193, figure 1), which goes back to the observation
of DINO (Caron et al. 2021, arXiv 2104.14294) that self-supervised ViT patch features separate objects from
background: a PCA over the patches of all images together, the first component thresholded to drop the
background, then a second PCA over the foreground patches whose first three components become red, green and
blue. Matching parts of different images get matching colours when the features are semantic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from vitssl.errors import VitsslError


@dataclass
class PCAResult:
    """Per image: (rows, cols, 3) colours in [0, 1] (background black) and (rows, cols) foreground masks."""

    colours: list[np.ndarray]
    foreground: list[np.ndarray]
    explained: list[float]


def _components(x: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Mean, the top-k principal directions (D, k) and their explained-variance ratios of rows `x`."""
    mean = x.mean(dim=0, keepdim=True)
    centred = x - mean
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    var = s**2
    k = min(k, vh.shape[0])
    return mean, vh[:k].T, var[:k] / var.sum().clamp(min=1e-12)


def _orient_background_low(pc1: Tensor, grids: list[tuple[int, int]]) -> Tensor:
    """Flip the first component's sign, image by image, so that each image's borders (usually background) score
    below its mean.

    One sign for all images fails when the component mostly separates light from dark: the object then scores high
    in images with a dark background and low in those with a light one. Per image, the border decides.
    """
    out, start = pc1.clone(), 0
    for rows, cols in grids:
        n = rows * cols
        m = pc1[start : start + n].view(rows, cols)
        border = torch.cat([m[0], m[-1], m[:, 0], m[:, -1]])
        if border.mean() > m.mean():
            out[start : start + n] = -m.flatten()
        start += n
    return out


def _to_unit(values: Tensor) -> Tensor:
    """Map each column to [0, 1] with its 1st and 99th percentiles (robust to a few extreme patches)."""
    low = torch.quantile(values, 0.01, dim=0, keepdim=True)
    high = torch.quantile(values, 0.99, dim=0, keepdim=True)
    return ((values - low) / (high - low).clamp(min=1e-8)).clamp(0, 1)


def _keep_at_least(keep: Tensor, pc1: Tensor, grids: list[tuple[int, int]], fraction: float) -> Tensor:
    """Per image, also keep its ``fraction`` of patches with the highest first-component scores.

    One cut over all images together leaves an image blank when its whole first component sits below the others'
    (a dark object, a small one): its most object-like patches are then shown rather than none.
    """
    keep, start = keep.clone(), 0
    for rows, cols in grids:
        n = rows * cols
        count = max(1, round(fraction * n))
        top = torch.topk(pc1[start : start + n], count).indices + start
        keep[top] = True
        start += n
    return keep


def pca_rgb(
    tokens: list[Tensor], remove_background: bool = True, threshold: float = 0.0, min_fraction: float = 0.1
) -> PCAResult:
    """First three principal components of the patch features of several images, as RGB.

    Args:
        tokens: One (rows, cols, D) token map per image (sizes may differ).
        remove_background: Threshold the standardised first component (sign chosen so that image borders score
            low) and colour only the patches above it.
        threshold: The cut on the standardised first component (0 = its mean; higher keeps less).
        min_fraction: Each image keeps at least this fraction of its patches (those scoring highest on the first
            component), so that no image comes out blank; 0 applies the cut alone.

    Returns:
        Colours in [0, 1] with black background, foreground masks, and the explained-variance ratios of the
        three components used for the colours.
    """
    if not tokens:
        raise VitsslError("no images given; pass at least one image file")
    grids = [(t.shape[0], t.shape[1]) for t in tokens]
    x = torch.cat([t.reshape(-1, t.shape[-1]) for t in tokens]).double()
    if len(x) < 4:
        raise VitsslError("PCA needs at least 4 patches in all; pass more or larger images")
    keep = torch.ones(len(x), dtype=torch.bool)
    if remove_background:
        mean, v1, _ = _components(x, 1)
        pc1 = ((x - mean) @ v1)[:, 0]
        pc1 = _orient_background_low((pc1 - pc1.mean()) / pc1.std().clamp(min=1e-12), grids)
        keep = _keep_at_least(pc1 > threshold, pc1, grids, min_fraction) if min_fraction > 0 else pc1 > threshold
        if keep.sum() < 4:  # nothing stands out: colour every patch rather than none
            keep = torch.ones(len(x), dtype=torch.bool)
    mean, v, ratios = _components(x[keep], 3)
    projected = (x - mean) @ v
    if projected.shape[1] < 3:
        projected = torch.cat([projected, projected.new_zeros(len(x), 3 - projected.shape[1])], dim=1)
    colours = torch.zeros(len(x), 3, dtype=torch.float64)
    colours[keep] = _to_unit(projected[keep])
    out_colours, out_masks, start = [], [], 0
    for rows, cols in grids:
        n = rows * cols
        out_colours.append(colours[start : start + n].view(rows, cols, 3).float().numpy())
        out_masks.append(keep[start : start + n].view(rows, cols).numpy())
        start += n
    return PCAResult(out_colours, out_masks, [round(float(r), 4) for r in ratios])
