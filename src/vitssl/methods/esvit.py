"""EsViT: DINO with a view head and a region head (Li et al. 2021, "Efficient Self-supervised Vision Transformers
for Representation Learning", arXiv 2106.09785; METHODS.md section 2).

Everything DINO does holds (EMA teacher, centring and sharpening, multi-crop, schedules, last-layer freeze); a
second DINO head is applied to every region token (Swin's last-stage tokens, or a ViT's patch tokens) and the
region-level matching loss is added to the view-level loss.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vitssl.config import PretrainConfig
from vitssl.losses.esvit import EsViTLoss
from vitssl.methods.base import StepOutput, register_method
from vitssl.methods.dino import DINO, NUM_GLOBAL_CROPS, build_dino_head
from vitssl.methods.multicrop import forward_per_resolution, resolution_groups
from vitssl.models.backbones import Features
from vitssl.models.heads import DINOHead
from vitssl.optim import ema_update_
from vitssl.schedules import StepState

VIEW_HEAD = "head"  # kept under DINO's name so DINO tooling (and checkpoints' key layout) stays familiar
REGION_HEAD = "region_head"


class EsViT(DINO):
    """Student and EMA teacher, each with a view head and a region head, trained with :class:`EsViTLoss`."""

    name = "esvit"

    def __init__(self, cfg: PretrainConfig) -> None:
        super().__init__(cfg)
        dim = self.student["backbone"].embed_dim
        self.student[REGION_HEAD] = build_dino_head(cfg, dim)
        self.teacher[REGION_HEAD] = build_dino_head(cfg, dim)
        self.teacher[REGION_HEAD].load_state_dict(self.student[REGION_HEAD].state_dict())
        self.teacher.requires_grad_(False)
        e = cfg.esvit
        self.loss_fn = EsViTLoss(
            cfg.dino.out_dim, cfg.dino.student_temp, cfg.dino.center_momentum, e.view_weight, e.region_weight
        )
        self._pending_region: list[Tensor] = []
        self._ema_pairs = [(pt, ps) for pt, ps in zip(self.teacher.parameters(), self.student.parameters())]

    # -- one step ------------------------------------------------------------------------------------------
    def region_active(self, state: StepState) -> bool:
        return self.cfg.esvit.region_weight > 0 and state.epoch_float >= self.cfg.esvit.region_loss_start

    def _outputs(self, net, views: list[Tensor], regions: bool):
        """View logits, region logits and region features per crop, one backbone call per resolution and one
        head call for all view vectors and one per resolution for the region tokens."""
        feats: list[Features] = forward_per_resolution(net["backbone"], views)
        view_logits = list(net[VIEW_HEAD](torch.cat([f.pooled for f in feats])).chunk(len(views)))
        region_logits: list[Tensor] = []
        if regions:
            for start, end in resolution_groups(views):
                region_logits.extend(_apply_to_tokens(net[REGION_HEAD], feats[start:end]))
        return view_logits, region_logits, feats

    def training_step(self, batch: dict, state: StepState) -> StepOutput:
        views: list[Tensor] = batch["views"]
        regions = self.region_active(state)
        temp = state.values["teacher_temp"]
        with torch.no_grad():
            t_view, t_region, t_feats = self._outputs(self.teacher, views[:NUM_GLOBAL_CROPS], regions)
        s_view, s_region, s_feats = self._outputs(self.student, views, regions)
        parts = self.loss_fn.parts(
            s_view,
            s_region,
            [f.tokens for f in s_feats],
            t_view,
            t_region,
            [f.tokens for f in t_feats],
            temp,
            region_weight=None if regions else 0.0,
        )
        self._pending_teacher.extend(t.detach() for t in t_view)
        self._pending_region.extend(t.detach() for t in t_region)
        metrics: dict[str, Tensor | float] = {}
        if state.log:
            metrics = self._diagnostics(t_view, [f.pooled for f in s_feats], temp)
            metrics.update({"loss_view": parts.view, "region_on": float(regions)})
            if regions:
                metrics.update(
                    {
                        "loss_region": parts.region,
                        "match_similarity": parts.similarity,
                        "match_coverage": parts.coverage,
                    }
                )
                metrics["region_teacher_entropy"] = _entropy(self.loss_fn.teacher_region_probs(t_region, temp))
        return StepOutput(loss=parts.total, metrics=metrics)

    def _diagnostics(self, teacher_out: list[Tensor], student_pooled: list[Tensor], temp: float) -> dict:
        # DINO's collapse diagnostics, computed with the view centre of this loss
        probs = torch.cat(self.loss_fn.teacher_view_probs(teacher_out, temp))
        mean_p = probs.mean(0)
        kl_uniform = (mean_p * (mean_p.clamp_min(1e-12).log() + math.log(mean_p.numel()))).sum()
        feats = torch.nn.functional.normalize(student_pooled[0].detach().float(), dim=-1)
        return {
            "teacher_entropy": _entropy([probs]),
            "kl_to_uniform": kl_uniform,
            "center_norm": self.loss_fn.center.norm(),
            "center_region_norm": self.loss_fn.center_region.norm(),
            "feature_std": feats.std(dim=0).mean(),
        }

    def before_optimizer_step(self, state: StepState) -> None:
        if state.epoch_float < self.cfg.dino.freeze_last_layer:
            for head in (VIEW_HEAD, REGION_HEAD):  # both heads' prototypes wait for the first epoch to pass
                for p in self.student[head].last_layer.parameters():
                    p.grad = None

    def after_optimizer_step(self, state: StepState) -> None:
        teacher, student = zip(*self._ema_pairs)
        ema_update_(teacher, student, state.values["teacher_momentum"])
        if self._pending_teacher:
            self.loss_fn.update_center(self._pending_teacher, self._pending_region)
        self._pending_teacher, self._pending_region = [], []

    def discard_pending(self) -> None:
        self._pending_teacher, self._pending_region = [], []


def _apply_to_tokens(head: DINOHead, feats: list[Features]) -> list[Tensor]:
    """The head on every region token of crops of one resolution: (B, N, D) each -> (B, N, K) each."""
    tokens = torch.cat([f.tokens for f in feats])
    b, n, d = tokens.shape
    logits = head(tokens.reshape(b * n, d)).reshape(b, n, -1)
    return list(logits.split([f.tokens.shape[0] for f in feats]))


def _entropy(probs: list[Tensor]) -> Tensor:
    p = torch.cat([q.flatten(0, -2) for q in probs])
    return -(p * p.clamp_min(1e-12).log()).sum(-1).mean()


@register_method("esvit")
def _build_esvit(cfg: PretrainConfig) -> EsViT:
    return EsViT(cfg)
