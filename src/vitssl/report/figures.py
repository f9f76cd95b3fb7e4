"""Picture grids for the attention and PCA tools, drawn on bare matplotlib Figures (headless-safe, no pyplot)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

_CELL = 2.2


def _overlay(image: np.ndarray, mask: np.ndarray, color: tuple[float, float, float] = (1.0, 0.2, 0.1)) -> np.ndarray:
    """The image with the mask tinted and everything outside it dimmed."""
    out = image * (0.35 + 0.65 * mask[..., None])
    tint = np.asarray(color)[None, None, :]
    return np.clip(np.where(mask[..., None], 0.6 * out + 0.4 * tint, out), 0, 1)


def attention_grid(
    image: np.ndarray, maps: np.ndarray, masks: np.ndarray, out_png: Path, title: str, threshold: float
) -> Path:
    """One image's attention: row 1 the image, the head mean and each head; row 2 the thresholded masks on it.

    Args:
        image: (H, W, 3) in [0, 1].
        maps: (heads + 1, H, W) upsampled maps, the last being the mean over heads.
        masks: (heads + 1, H, W) booleans, same order.
        out_png: Where to write the grid.
        title: The figure title.
        threshold: The kept mass, for the labels.
    """
    heads = maps.shape[0] - 1
    cols = heads + 2
    fig = Figure(figsize=(_CELL * cols, _CELL * 2 + 0.4), layout="constrained")
    axes = fig.subplots(2, cols, squeeze=False)
    names = ["mean of heads"] + [f"head {h}" for h in range(heads)]
    order = [heads, *range(heads)]
    axes[0, 0].imshow(image)
    axes[0, 0].set_title("image", fontsize=8)
    axes[1, 0].imshow(image)
    axes[1, 0].set_title(f"masks keep {threshold:.0%} of mass", fontsize=8)
    for col, (name, idx) in enumerate(zip(names, order, strict=True), start=1):
        axes[0, col].imshow(maps[idx], cmap="inferno")
        axes[0, col].set_title(name, fontsize=8)
        axes[1, col].imshow(_overlay(image, masks[idx]))
        axes[1, col].set_title(f"{name}, mask", fontsize=8)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    return out_png


def image_pairs_grid(images: list[np.ndarray], pictures: list[np.ndarray], out_png: Path, title: str) -> Path:
    """Images on the top row, a picture of each (e.g. PCA colours) below it."""
    n = len(images)
    fig = Figure(figsize=(_CELL * n, _CELL * 2 + 0.4), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    for i, (image, picture) in enumerate(zip(images, pictures, strict=True)):
        axes[0, i].imshow(image)
        axes[1, i].imshow(picture, interpolation="nearest")
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    return out_png
