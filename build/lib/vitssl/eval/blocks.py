"""Per-block features of a frozen backbone: the linear-probe feature and the block list it is read from.

The linear-probe feature follows DINO (Caron et al. 2021, arXiv 2104.14294, appendix: the [CLS] tokens of the
last n blocks, each through the final norm, optionally with the mean of the last block's patch tokens) and
EsViT (Li et al. 2021, arXiv 2106.09785: the token means of the last 4 Swin blocks).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from vitssl.errors import VitsslError
from vitssl.models.backbones import Backbone


def is_swin(backbone: Backbone) -> bool:
    """Whether the backbone is a Swin Transformer (multi-stage, no [CLS] token)."""
    flag = getattr(backbone, "is_swin", None)
    if flag is not None:
        return bool(flag)
    return hasattr(backbone.model, "layers") and not hasattr(backbone.model, "blocks")


def blocks_of(backbone: Backbone) -> list[nn.Module]:
    """All transformer blocks in forward order (Swin: every stage's blocks, flattened)."""
    model: Any = backbone.model  # timm submodules are reached by attribute
    if is_swin(backbone):
        return [block for layer in model.layers for block in layer.blocks]
    return list(model.blocks)


def block_features(backbone: Backbone, images: Tensor, n: int, avgpool: bool = False) -> Tensor:
    """The linear-probe feature: pooled outputs of the last `n` blocks, concatenated, (B, sum of widths).

    ViT (DINO): [CLS] of each of the last n blocks through the final norm; with `avgpool` also the mean of the
    last block's patch tokens (DINO's choice for ViT-B). Swin (EsViT): the token mean of each of the last n
    blocks (see ``Backbone.intermediate``, which computes them with forward hooks).
    """
    blocks = blocks_of(backbone)
    if not 1 <= n <= len(blocks):
        raise VitsslError(f"--n-last-blocks must lie in 1..{len(blocks)} for this backbone, got {n}")
    if avgpool and is_swin(backbone):
        raise VitsslError("--avgpool is for ViT; Swin features are token means already")
    return torch.cat(list(backbone.intermediate(images, n, patch_mean=avgpool)), dim=1)


def default_n_last_blocks(backbone: Backbone) -> tuple[int, bool]:
    """The papers' defaults: ViT-S and smaller n=4; ViT-B and larger n=1 + patch mean; Swin n=4 token means."""
    if is_swin(backbone):
        return min(4, len(blocks_of(backbone))), False
    if backbone.embed_dim >= 768:
        return 1, True
    return min(4, len(blocks_of(backbone))), False
