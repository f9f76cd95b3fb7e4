"""Run a network once per crop resolution (DINO's multi-crop wrapper, Caron et al. 2021, section 3.1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from vitssl.models.backbones import Backbone, Features


def resolution_groups(views: Sequence[Tensor]) -> list[tuple[int, int]]:
    """Consecutive runs of crops with the same spatial size, as (start, end) index pairs."""
    groups: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(views) + 1):
        if i == len(views) or views[i].shape[-2:] != views[start].shape[-2:]:
            groups.append((start, i))
            start = i
    return groups


def forward_per_resolution(backbone: Backbone, views: Sequence[Tensor]) -> list[Features]:
    """Backbone features for each crop, computed with one backbone call per crop resolution."""
    out: list[Features] = []
    for start, end in resolution_groups(views):
        batch = views[start:end]
        feats = backbone(torch.cat(list(batch)) if len(batch) > 1 else batch[0])
        sizes = [v.shape[0] for v in batch]
        for pooled, tokens in zip(feats.pooled.split(sizes), feats.tokens.split(sizes)):
            out.append(Features(pooled=pooled, tokens=tokens, grid=feats.grid))
    return out
