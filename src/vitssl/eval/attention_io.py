"""Running the attention tools on files: picture grids with raw maps, and the foreground-Jaccard score."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from vitssl.config import PretrainConfig
from vitssl.data.build import eval_transform
from vitssl.data.views.normalise import denormalise
from vitssl.errors import VitsslError
from vitssl.eval.attention import JaccardScore, attention_maps, keep_mass, score_foreground, upsample
from vitssl.eval.blocks import is_swin
from vitssl.eval.images import DEFAULT_MAX_SIDE, image_to_tensor, load_readable
from vitssl.eval.pairs import load_pairs
from vitssl.models.backbones import Backbone
from vitssl.report.figures import attention_grid


def unique_names(paths: Sequence[Path]) -> list[str]:
    """File stems, prefixed with their folder's name (then numbered) where two images share a stem."""
    stems = [p.stem for p in paths]
    names = [f"{p.parent.name}_{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]
    return [f"{n}_{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def patch_multiple(backbone: Backbone) -> int:
    """Input sides must be multiples of this: the patch for ViT; patch x 2^(stages-1) x window for Swin."""
    return int(getattr(backbone, "stride", backbone.patch_size))


@dataclass
class AttentionFiles:
    """What :func:`render_attention` wrote for one image."""

    figure: Path
    """``NAME_attention.png``: the image, the head mean and every head, with their masks below."""
    maps: Path
    """``NAME_attention.npy``: (heads, rows, cols) float32 maps at patch resolution, each head summing to 1."""
    folder: Path
    """``NAME/``: ``image.png`` (the analysed image), ``head{i}.png`` and ``mean.png`` (maps at the image's size),
    ``head{i}_mask.png`` and ``mean_mask.png`` (white: kept patches) and ``masks.npy`` ((heads + 1, rows, cols)
    booleans, every head then the head mean)."""
    grid: tuple[int, int]
    """(rows, cols) of the patch grid."""


@torch.no_grad()
def render_attention(
    cfg: PretrainConfig,
    backbone: Backbone,
    paths: Sequence[str | Path],
    out_dir: Path,
    threshold: float = 0.6,
    resize: int | None = None,
    query: tuple[int, int] | None = None,
    device: str = "cpu",
    max_side: int | None = DEFAULT_MAX_SIDE,
) -> list[AttentionFiles]:
    """For every image: the figure, the raw maps and a folder of per-head pictures and masks (see
    :class:`AttentionFiles`).

    Images of any size and aspect ratio work at their own resolution: scaled as
    :func:`vitssl.eval.images.fit_size` says (``resize`` sets the short side; otherwise a longer side above
    ``max_side`` is brought down to it), then both sides are cropped to a multiple of the patch size (ViT position
    embeddings are interpolated to the grid).
    """
    written = []
    kind = "Swin patch-query" if is_swin(backbone) else "[CLS]"
    # Load every image first so that a missing file fails before any work is done; unreadable ones are skipped.
    images = load_readable(paths)
    names = unique_names([path for path, _ in images])
    for (path, pil), name in tqdm(
        zip(images, names, strict=True), desc="attention maps", unit="image", disable=len(images) < 4
    ):
        x = image_to_tensor(pil, cfg.data.mean, cfg.data.std, patch_multiple(backbone), resize, max_side)
        _check_token_count(x, backbone, path)
        maps = attention_maps(backbone, x.to(device), query)[0].cpu()  # (heads, rows, cols)
        all_maps = torch.cat([maps, maps.mean(dim=0, keepdim=True)])
        size = (x.shape[-2], x.shape[-1])
        grid_masks = keep_mass(all_maps, threshold)
        masks = upsample(grid_masks[None], size)[0].bool().numpy()
        big = upsample(all_maps[None], size, mode="nearest")[0].numpy()
        picture = denormalise(x, cfg.data.mean, cfg.data.std)[0]
        stem = out_dir / f"{name}_attention"
        out_dir.mkdir(parents=True, exist_ok=True)
        np.save(stem.with_suffix(".npy"), maps.numpy().astype(np.float32))
        heads, rows, cols = maps.shape
        title = f"{name}{path.suffix}: last-block {kind} attention, {heads} heads, {rows}x{cols} patches"
        png = attention_grid(picture, big, masks, stem.with_suffix(".png"), title, threshold)
        folder = _write_per_head(out_dir / name, picture, big, masks, grid_masks.numpy())
        written.append(AttentionFiles(png, stem.with_suffix(".npy"), folder, (rows, cols)))
    return written


def _write_per_head(folder: Path, picture: np.ndarray, maps: np.ndarray, masks: np.ndarray, grid: np.ndarray) -> Path:
    """One image's folder: the analysed image, each map as a colour PNG and each mask as a black-and-white PNG,
    all at the image's size so that they overlay it pixel for pixel, and the masks on the patch grid as .npy.

    Args:
        folder: Where to write.
        picture: (H, W, 3) image in [0, 1].
        maps: (heads + 1, H, W) upsampled maps, the last being the head mean.
        masks: (heads + 1, H, W) upsampled booleans, same order.
        grid: (heads + 1, rows, cols) booleans on the patch grid.
    """
    from matplotlib import colormaps
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(picture, 0, 1) * 255).round().astype(np.uint8)).save(folder / "image.png")
    colour = colormaps["inferno"]
    names = [f"head{i}" for i in range(len(maps) - 1)] + ["mean"]
    for name, heat, mask in zip(names, maps, masks, strict=True):
        # each map scaled by its own peak: heads differ in how peaked they are, and each picture shows its shape
        scaled = heat / max(float(heat.max()), 1e-12)
        Image.fromarray((colour(scaled)[..., :3] * 255).round().astype(np.uint8)).save(folder / f"{name}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{name}_mask.png")
    np.save(folder / "masks.npy", grid.astype(bool))
    return folder


MAX_TOKENS = 4096
"""Above this many patches the explicit (tokens x tokens) attention of a ViT takes gigabytes: ask for a smaller
--max-side."""


def _check_token_count(x: Tensor, backbone: Backbone, path: Path) -> None:
    stride = patch_multiple(backbone)
    tokens = (x.shape[-2] // stride) * (x.shape[-1] // stride)
    if tokens > MAX_TOKENS and not is_swin(backbone):
        shrink = (MAX_TOKENS / tokens) ** 0.5
        fit = int(max(x.shape[-2:]) * shrink) // stride * stride
        raise VitsslError(
            f"{path.name} gives {tokens} patches of {stride} px at {x.shape[-1]}x{x.shape[-2]} px, too many for an "
            f"explicit attention map; pass --max-side {fit} (or smaller)"
        )


def _batches(images: Tensor, masks: Tensor, batch_size: int, device: str) -> Iterator[tuple[Tensor, Tensor]]:
    for i in tqdm(range(0, len(images), batch_size), desc="attention Jaccard", unit="batch"):
        yield images[i : i + batch_size].to(device), (masks[i : i + batch_size] == 1).to(device)


def score_networks(
    cfg: PretrainConfig,
    networks: dict[str, Backbone],
    data: str = "synthetic",
    threshold: float = 0.6,
    max_images: int | None = 500,
    batch_size: int = 64,
    device: str = "cpu",
) -> dict[str, JaccardScore]:
    """Foreground Jaccard of each network's thresholded attention on the same image/mask pairs (test split)."""
    size = eval_transform(cfg).size
    pairs = load_pairs(data, "val", size, cfg.data.mean, cfg.data.std, cfg.data.cache_dir, max_images, binary=True)
    return {
        name: score_foreground(
            net.to(device).eval(), _batches(pairs.images, pairs.masks, batch_size, device), threshold
        )
        for name, net in networks.items()
    }


def save_scores(scores: dict[str, JaccardScore], path: Path, extra: dict) -> Path:
    """Write the Jaccard scores of every network (with ``extra`` provenance) as JSON; returns the path."""
    payload = {
        **extra,
        **{
            name: {"mean_map": s.mean_map, "best_head": s.best_head, "per_head": s.per_head, "images": s.images}
            for name, s in scores.items()
        },
    }
    path.write_text(json.dumps(payload, indent=2))
    return path
