"""Self-attention maps of the last block, thresholded masks, and their agreement with true foregrounds.

ViT (DINO, Caron et al. 2021, arXiv 2104.14294, figures 1 and 3, section 4.2.1): the [CLS] query's attention
over the patches in the last block, one map per head. Swin (EsViT, Li et al. 2021, arXiv 2106.09785, section
4.3) has no [CLS] token, so we show the attention of a chosen patch query inside its (shifted) window.

Training keeps the fused attention kernels; the maps here are recomputed explicitly from the attention module's
own input and projections (captured with forward hooks), so they are exactly the weights the kernel used.

Maps are renormalised over the patches (the [CLS] query also attends to itself; DINO renormalises the same way
before thresholding), so each head's map sums to 1 and a thresholded mask "keeps a fraction t of the mass".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vitssl.errors import VitsslError
from vitssl.eval.blocks import is_swin
from vitssl.models.backbones import Backbone


@torch.no_grad()
def vit_cls_attention(backbone: Backbone, images: Tensor) -> Tensor:
    """[CLS]-to-patch attention of the last block, (B, heads, rows, cols), each head summing to 1."""
    attn = backbone.last_attention(images)  # (B, heads, T, T), softmax rows
    prefix = backbone.num_prefix_tokens
    rows, cols = images.shape[-2] // backbone.patch_size, images.shape[-1] // backbone.patch_size
    cls_row = attn[:, :, 0, prefix:]
    cls_row = cls_row / cls_row.sum(dim=-1, keepdim=True)
    return cls_row.reshape(len(images), -1, rows, cols)


@torch.no_grad()
def swin_query_attention(backbone: Backbone, images: Tensor, query: tuple[int, int] | None = None) -> Tensor:
    """Attention of one patch query in the last Swin block, (B, heads, rows, cols) over the last-stage grid.

    Keys outside the query's window get 0 (windowed attention never looks there); the map sums to 1 per head.

    Args:
        backbone: A Swin backbone.
        images: (B, 3, H, W) normalised images.
        query: (row, col) of the query on the last-stage grid; default the centre.
    """
    model: Any = backbone.model  # timm's SwinTransformer: its submodules are reached by attribute
    block = model.layers[-1].blocks[-1]
    attn_module: Any = block.attn
    captured: dict[str, Any] = {}

    def block_hook(_m: object, args: tuple) -> None:
        captured["grid"] = tuple(args[0].shape[1:3])  # the block's input is (B, H, W, C)

    def attn_hook(_m: object, args: tuple, kwargs: dict) -> None:
        captured["x"] = args[0]
        captured["mask"] = kwargs.get("mask", args[1] if len(args) > 1 else None)

    handles = [
        block.register_forward_pre_hook(block_hook),
        attn_module.register_forward_pre_hook(attn_hook, with_kwargs=True),
    ]
    try:
        model.forward_features(images)
    finally:
        for h in handles:
            h.remove()
    rows, cols = int(captured["grid"][0]), int(captured["grid"][1])
    qr, qc = query if query is not None else (rows // 2, cols // 2)
    if not (0 <= qr < rows and 0 <= qc < cols):
        raise VitsslError(f"--query {qr},{qc} is outside the last-stage grid of {rows}x{cols} patches")
    probs = _window_softmax(attn_module, captured["x"], captured["mask"])
    return _scatter_window(probs, block, len(images), rows, cols, qr, qc)


def _window_softmax(attn_module: Any, x: Tensor, mask: Tensor | None) -> Tensor:
    """Explicit windowed attention probabilities (nW*B, heads, N, N), as timm's WindowAttention computes them."""
    b_, n, _ = x.shape
    heads = attn_module.num_heads
    qkv = attn_module.qkv(x).reshape(b_, n, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k = qkv[0] * attn_module.scale, qkv[1]
    logits = q @ k.transpose(-2, -1)
    table, index = attn_module.relative_position_bias_table, attn_module.relative_position_index
    logits = logits + table[index.view(-1)].view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
    if mask is not None:
        nw = mask.shape[0]
        logits = (logits.view(-1, nw, heads, n, n) + mask.unsqueeze(1).unsqueeze(0)).view(-1, heads, n, n)
    return logits.softmax(dim=-1)


def _scatter_window(probs: Tensor, block: Any, batch: int, rows: int, cols: int, qr: int, qc: int) -> Tensor:
    """Put the query's row of its window back on the (unshifted, unpadded) grid."""
    wh, ww = block.window_size
    sh, sw = block.shift_size
    # The block rolls the map by -shift, so original (r, c) sits at ((r - sh) % rows, (c - sw) % cols).
    rr, rc = (qr - sh) % rows, (qc - sw) % cols
    padded_cols = -(-cols // ww) * ww
    windows_per_image = (-(-rows // wh)) * (padded_cols // ww)
    window = (rr // wh) * (padded_cols // ww) + rc // ww
    q_index = (rr % wh) * ww + rc % ww
    heads = probs.shape[1]
    per_image = probs.view(batch, windows_per_image, heads, wh * ww, wh * ww)[:, window, :, q_index]  # (B, h, N)
    out = torch.zeros(batch, heads, rows, cols, dtype=probs.dtype, device=probs.device)
    top, left = (rr // wh) * wh, (rc // ww) * ww
    for i in range(wh):
        for j in range(ww):
            r, c = top + i, left + j
            if r < rows and c < cols:  # padded positions are not image patches
                out[:, :, (r + sh) % rows, (c + sw) % cols] = per_image[:, :, i * ww + j]
    return out / out.sum(dim=(-2, -1), keepdim=True)


def attention_maps(backbone: Backbone, images: Tensor, query: tuple[int, int] | None = None) -> Tensor:
    """The per-head maps of the last block, (B, heads, rows, cols): [CLS] for ViT, a patch query for Swin."""
    if is_swin(backbone):
        return swin_query_attention(backbone, images, query)
    if query is not None:
        raise VitsslError("--query is for Swin backbones; a ViT's maps are those of its [CLS] token")
    return vit_cls_attention(backbone, images)


def keep_mass(maps: Tensor, fraction: float = 0.6) -> Tensor:
    """Boolean masks keeping, per map, the smallest set of patches that holds `fraction` of its mass.

    Args:
        maps: (..., rows, cols) non-negative maps (they need not sum to 1; each is normalised first).
        fraction: Share of the mass to keep, in (0, 1].
    """
    if not 0 < fraction <= 1:
        raise VitsslError(f"--threshold must lie in (0, 1], got {fraction}")
    flat = maps.flatten(-2)
    flat = flat / flat.sum(dim=-1, keepdim=True)
    values, order = flat.sort(dim=-1, descending=True)
    before = values.cumsum(dim=-1) - values  # mass of the larger patches before each one
    keep_sorted = before < fraction - 1e-7
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return keep.view(maps.shape)


def upsample(maps: Tensor, size: tuple[int, int], mode: str = "nearest") -> Tensor:
    """(B, h, rows, cols) -> (B, h, H, W)."""
    return F.interpolate(maps.float(), size=size, mode=mode)


def jaccard(pred: Tensor, truth: Tensor) -> Tensor:
    """Intersection over union of boolean masks over the last two dims (1 when both are empty)."""
    inter = (pred & truth).flatten(-2).sum(-1).float()
    union = (pred | truth).flatten(-2).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


@dataclass
class JaccardScore:
    """Mean Jaccard of the mask of the head-averaged map, of each head, and the best head, over the images."""

    mean_map: float
    per_head: list[float]
    images: int

    @property
    def best_head(self) -> float:
        return max(self.per_head)


@torch.no_grad()
def score_foreground(backbone: Backbone, pairs: Iterator[tuple[Tensor, Tensor]], fraction: float = 0.6) -> JaccardScore:
    """Jaccard between thresholded attention and true foregrounds (DINO, table 4's protocol on our data).

    Args:
        backbone: The network to score.
        pairs: Batches of (images (B, 3, H, W), foreground masks (B, H, W) bool).
        fraction: Attention mass kept by each thresholded mask.
    """
    mean_sum, head_sum, count = 0.0, None, 0
    for images, truth in pairs:
        maps = attention_maps(backbone, images)
        size = tuple(images.shape[-2:])
        all_maps = torch.cat([maps, maps.mean(dim=1, keepdim=True)], dim=1)
        masks = upsample(keep_mass(all_maps, fraction), size).bool()  # type: ignore[arg-type]
        scores = jaccard(masks, truth[:, None].expand_as(masks))  # (B, heads + 1)
        mean_sum += scores[:, -1].sum().item()
        head_sum = scores[:, :-1].sum(0) if head_sum is None else head_sum + scores[:, :-1].sum(0)
        count += len(images)
    if count == 0 or head_sum is None:
        raise VitsslError("no image/mask pairs to score; check --data")
    return JaccardScore(round(100 * mean_sum / count, 2), [round(100 * v / count, 2) for v in head_sum.tolist()], count)
