"""Region correspondence between two views (EsViT, Li et al. 2021, arXiv 2106.09785, section 4.3 and figure 4;
docs/methods.md section 2.4).

Each region (final-norm token) of view 1 is matched to its most similar region of view 2 by cosine similarity.
The picture draws the ``top`` most confident matches side by side. The score uses a horizontal flip of view 1
(plus colour jitter) as view 2, so the right answer is known: region (r, c) should match (r, C - 1 - c).
Accuracy = the fraction of the top matches of each image that land on the mirrored position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import Tensor

from vitssl.data.views import crop_ops
from vitssl.data.views.multicrop import EvalTransform
from vitssl.data.views.normalise import to_image
from vitssl.eval.features import batch_field
from vitssl.models.backbones import Backbone

MATCH_COLOURS = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
]  # fmt: skip


@dataclass
class Matches:
    """Region matches of one image pair, best first.

    Attributes:
        source: (M,) token indices in view 1 (row-major over ``grid1``).
        target: (M,) matched token indices in view 2.
        similarity: (M,) cosine similarities.
        grid1, grid2: token grids of the two views.
    """

    source: Tensor
    target: Tensor
    similarity: Tensor
    grid1: tuple[int, int]
    grid2: tuple[int, int]


def best_matches(tokens1: Tensor, tokens2: Tensor, top: int) -> tuple[Tensor, Tensor, Tensor]:
    """For a batch of token pairs (B, N1, D) and (B, N2, D): each view-1 token's best view-2 token, then the
    ``top`` most similar of those per image. Returns (B, top) source indices, target indices and similarities."""
    sim = torch.bmm(F.normalize(tokens1.float(), dim=-1), F.normalize(tokens2.float(), dim=-1).transpose(1, 2))
    best_sim, best_target = sim.max(dim=-1)  # (B, N1)
    top = min(top, best_sim.shape[1])
    order = best_sim.argsort(dim=-1, descending=True)[:, :top]
    return order, best_target.gather(1, order), best_sim.gather(1, order)


@torch.no_grad()
def match_views(backbone: Backbone, view1: Tensor, view2: Tensor, top: int = 10) -> Matches:
    """The ``top`` best region matches from ``view1`` (3, H, W) to ``view2`` (3, H', W')."""
    f1, f2 = backbone(view1.unsqueeze(0)), backbone(view2.unsqueeze(0))
    source, target, similarity = best_matches(f1.tokens, f2.tokens, top)
    return Matches(source[0], target[0], similarity[0], f1.grid, f2.grid)


def flip_accuracy(source: Tensor, target: Tensor, grid: tuple[int, int]) -> Tensor:
    """(B,) fraction of matches whose target is the horizontal mirror of their source on a ``grid``."""
    cols = grid[1]
    mirrored = (source // cols) * cols + (cols - 1 - source % cols)
    return (target == mirrored).float().mean(dim=-1)


class FlipPairTransform:
    """View 1: the deterministic evaluation crop. View 2: its horizontal flip with colour jitter drawn from the
    sample's generator (so a score is reproducible and independent of the loader's workers)."""

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float], jitter: float = 0.2) -> None:
        self.crop = EvalTransform(size, mean, std)
        self.mean, self.std = tuple(mean), tuple(std)
        self.jitter = jitter
        self._to_tensor = crop_ops.ToNormalizedTensor(mean, std)

    def __call__(self, image: Image.Image, generator: torch.Generator) -> list[Tensor]:
        view1 = self.crop(image)
        # back to pixels (exact: the crop came from 8-bit pixels), mirrored, then jittered
        flipped = to_image(view1, self.mean, self.std).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        j = self.jitter
        if j > 0:
            flipped = crop_ops.color_jitter(flipped, j, j, j * 0.5, 0.05, crop_ops.Draws(generator))
        return [view1, self._to_tensor(flipped)]


@torch.no_grad()
def flip_correspondence_accuracy(backbone: Backbone, loader, device: torch.device, top: int = 10) -> float:
    """Mean flip-correspondence accuracy (%) over a loader of :class:`FlipPairTransform` pairs."""
    backbone.eval()
    total, count = 0.0, 0
    for batch in loader:
        view1, view2 = (v.to(device) for v in batch_field(batch, "views"))
        f1, f2 = backbone(view1), backbone(view2)
        source, target, _ = best_matches(f1.tokens, f2.tokens, top)
        acc = flip_accuracy(source, target, f1.grid)
        total += float(acc.sum())
        count += acc.numel()
    return 100.0 * total / max(count, 1)


def draw_matches(
    image1: Image.Image, image2: Image.Image, matches: Matches, display: int = 256, gap: int = 8
) -> Image.Image:
    """Both views side by side (each resized to ``display`` px), a line and a box per match, best first."""
    canvas = Image.new("RGB", (2 * display + gap, display), (255, 255, 255))
    canvas.paste(image1.convert("RGB").resize((display, display), Image.Resampling.NEAREST), (0, 0))
    canvas.paste(image2.convert("RGB").resize((display, display), Image.Resampling.NEAREST), (display + gap, 0))
    draw = ImageDraw.Draw(canvas)
    for rank, (s, t) in enumerate(zip(matches.source.tolist(), matches.target.tolist(), strict=True)):
        colour = MATCH_COLOURS[rank % len(MATCH_COLOURS)]
        box1 = _cell_box(s, matches.grid1, display, 0)
        box2 = _cell_box(t, matches.grid2, display, display + gap)
        draw.rectangle(box1, outline=colour, width=2)
        draw.rectangle(box2, outline=colour, width=2)
        draw.line([_centre(box1), _centre(box2)], fill=colour, width=2)
    return canvas


def _cell_box(index: int, grid: tuple[int, int], display: int, x0: int) -> tuple[int, int, int, int]:
    rows, cols = grid
    r, c = divmod(index, cols)
    h, w = display / rows, display / cols
    return (round(x0 + c * w), round(r * h), round(x0 + (c + 1) * w) - 1, round((r + 1) * h) - 1)


def _centre(box: tuple[int, int, int, int]) -> tuple[float, float]:
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
