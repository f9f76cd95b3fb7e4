"""What DINO and EsViT share, as functions they both call (docs/methods.md sections 1 and 2): the backbone and
head builders, the multi-crop views, the teacher schedules, the student/teacher pair and the KoLeo term (the
life cycle around the optimiser step is :class:`vitssl.methods.distillation.DistillationMethod`).

One backbone call per crop resolution (DINO's multi-crop wrapper, Caron et al. 2021, arXiv 2104.14294,
section 3.1) lives here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vitssl.config import PretrainConfig
from vitssl.data.batches import joined
from vitssl.data.views.multicrop import CropSpec, dino_crops_from_config
from vitssl.losses.koleo import koleo_term
from vitssl.losses.terms import WeightedTerm
from vitssl.models.backbones import Backbone, Features, build_backbone
from vitssl.models.heads import DINOHead
from vitssl.schedules import cosine_schedule, linear_warmup

NUM_GLOBAL_CROPS = 2


def build_model_backbone(cfg: PretrainConfig, drop_path: float) -> Backbone:
    """The ``model`` section's backbone, native size ``model.img_size`` (default: the global crop size)."""
    m = cfg.model
    return build_backbone(
        m.backbone,
        patch_size=m.patch_size,
        img_size=m.img_size or cfg.crops.global_size,
        depth=m.depth,
        drop_path_rate=drop_path,
        window_size=m.window_size,
    )


def global_crop_koleo(cfg: PretrainConfig, feats: Sequence[Features]) -> WeightedTerm | None:
    """``dino.koleo_weight`` x the mean KoLeo loss of the student's pooled feature over the global crops
    (DINOv2's regulariser, Oquab et al. 2023; losses/koleo.py), logged as ``koleo``; None when the weight is 0
    (DINO and EsViT as published)."""
    return koleo_term([f.pooled for f in feats[:NUM_GLOBAL_CROPS]], cfg.dino.koleo_weight)


def build_dino_head(cfg: PretrainConfig, in_dim: int) -> DINOHead:
    d = cfg.dino
    return DINOHead(
        in_dim,
        d.out_dim,
        hidden_dim=d.hidden_dim,
        bottleneck_dim=d.bottleneck_dim,
        use_bn=d.use_bn_in_head,
        norm_last_layer=d.norm_last_layer,
    )


def student_and_teacher(cfg: PretrainConfig, heads: Sequence[str]) -> tuple[MultiCropNetwork, MultiCropNetwork]:
    """Student (backbone with drop-path + DINO heads named ``heads``) and teacher (the same without drop-path),
    built in that order; :class:`~vitssl.methods.distillation.DistillationMethod` makes the teacher an EMA copy."""

    def network(drop_path: float) -> MultiCropNetwork:
        backbone = build_model_backbone(cfg, drop_path)
        net = MultiCropNetwork({"backbone": backbone})
        for name in heads:
            net[name] = build_dino_head(cfg, backbone.embed_dim)
        return net

    student = network(cfg.model.drop_path)
    return student, network(0.0)


def dino_views(cfg: PretrainConfig) -> list[CropSpec]:
    return dino_crops_from_config(cfg.crops)


def dino_schedule(cfg: PretrainConfig, step: int, steps_per_epoch: int, total_steps: int) -> dict[str, float]:
    """Teacher momentum (cosine to ``momentum_teacher_end``, DINO: 1) and teacher temperature (linear warm-up,
    then constant) at ``step``."""
    d = cfg.dino
    warmup = round(d.warmup_teacher_temp_epochs * steps_per_epoch)
    return {
        "teacher_momentum": cosine_schedule(step, total_steps, d.momentum_teacher, d.momentum_teacher_end),
        "teacher_temp": linear_warmup(step, warmup, d.warmup_teacher_temp, d.teacher_temp),
    }


def resolution_groups(views: Sequence[Tensor]) -> list[tuple[int, int]]:
    """Consecutive runs of crops with the same spatial size, as (start, end) index pairs."""
    groups: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(views) + 1):
        if i == len(views) or views[i].shape[-2:] != views[start].shape[-2:]:
            groups.append((start, i))
            start = i
    return groups


def forward_per_resolution(backbone: nn.Module, views: Sequence[Tensor]) -> list[Features]:
    """Backbone features for each crop, computed with one backbone call per crop resolution."""
    out: list[Features] = []
    for start, end in resolution_groups(views):
        batch = views[start:end]
        feats = backbone(joined(batch))  # no copy when the loader stacked this resolution's crops together
        sizes = [v.shape[0] for v in batch]
        for pooled, tokens in zip(feats.pooled.split(sizes), feats.tokens.split(sizes), strict=True):
            out.append(Features(pooled=pooled, tokens=tokens, grid=feats.grid))
    return out


@dataclass
class MultiCropOutput:
    """A multi-crop network's outputs per crop: view logits, region logits (when asked) and backbone features."""

    view: list[Tensor]
    region: list[Tensor]
    feats: list[Features]


class MultiCropNetwork(nn.ModuleDict):
    """Backbone + DINO heads (``head`` on the view vector, optionally ``region_head`` on every region token):
    one backbone call per crop resolution, one head call for all view vectors and one region-head call per
    resolution. A module with a forward, so data parallelism can wrap the whole student."""

    def forward(self, views: list[Tensor], regions: bool = False) -> MultiCropOutput:
        feats = forward_per_resolution(self["backbone"], views)
        view_logits = list(self["head"](torch.cat([f.pooled for f in feats])).chunk(len(views)))
        region_logits: list[Tensor] = []
        if regions:
            for start, end in resolution_groups(views):
                region_logits.extend(_apply_to_tokens(self["region_head"], feats[start:end]))
        return MultiCropOutput(view_logits, region_logits, feats)


def _apply_to_tokens(head: nn.Module, feats: list[Features]) -> list[Tensor]:
    """The head on every region token of crops of one resolution: (B, N, D) each -> (B, N, K) each."""
    tokens = torch.cat([f.tokens for f in feats])
    b, n, d = tokens.shape
    logits = head(tokens.reshape(b * n, d)).reshape(b, n, -1)
    return list(logits.split([f.tokens.shape[0] for f in feats]))
