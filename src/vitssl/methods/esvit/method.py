"""EsViT: DINO with a view head and a region head (Li et al. 2021, "Efficient Self-supervised Vision Transformers
for Representation Learning", arXiv 2106.09785; docs/methods.md section 2).

Everything DINO does holds (EMA teacher, centring and sharpening, multi-crop, schedules, last-layer freeze) and
is shared with it through :class:`vitssl.methods.distillation.DistillationMethod` and
:mod:`vitssl.methods.dino_family`; a second DINO head is applied to every region token
(Swin's last-stage tokens, or a ViT's patch tokens) and the region-level matching loss is added to the view loss.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vitssl.config import PretrainConfig
from vitssl.data.batches import ViewBatch
from vitssl.losses.esvit import EsViTLoss
from vitssl.methods.base import StepOutput
from vitssl.methods.diagnostics import collapse_diagnostics, entropy
from vitssl.methods.dino_family import NUM_GLOBAL_CROPS, global_crop_koleo, student_and_teacher
from vitssl.methods.distillation import DistillationMethod
from vitssl.methods.esvit.config import EsViTConfig
from vitssl.methods.registry import register_method
from vitssl.schedules import StepState

__all__ = ["EsViT", "EsViTConfig"]

VIEW_HEAD = "head"  # kept under DINO's name so DINO tooling (and checkpoints' key layout) stays familiar
REGION_HEAD = "region_head"


class EsViT(DistillationMethod):
    """Student and EMA teacher, each with a view head and a region head, trained with :class:`EsViTLoss`; both
    heads' prototypes wait for the first epoch(s) (``dino.freeze_last_layer``)."""

    name = "esvit"
    may_skip_parameters = True  # the region head gets no gradient before esvit.region_loss_start

    def __init__(self, cfg: PretrainConfig) -> None:
        super().__init__(cfg, *student_and_teacher(cfg, heads=(VIEW_HEAD, REGION_HEAD)))
        d, e = cfg.dino, cfg.esvit
        self.loss_fn = EsViTLoss(d.out_dim, d.student_temp, d.center_momentum, e.view_weight, e.region_weight)

    def region_active(self, state: StepState) -> bool:
        return bool(self.cfg.esvit.region_weight > 0 and state.epoch_float >= self.cfg.esvit.region_loss_start)

    def training_step(self, batch: ViewBatch, state: StepState) -> StepOutput:
        views = batch.views
        regions = self.region_active(state)
        temp = state.values["teacher_temp"]
        with torch.no_grad():  # the teacher never learns by gradient
            t = self.teacher(views[:NUM_GLOBAL_CROPS], regions=regions)
        t_view, t_region = [x.detach() for x in t.view], [x.detach() for x in t.region]
        s = self.run("student", views, regions=regions)
        parts = self.loss_fn.parts(
            s.view,
            s.region,
            [f.tokens for f in s.feats],
            t_view,
            t_region,
            [f.tokens.detach() for f in t.feats],
            temp,
            # View-only phase: the authors train on the plain DINO loss, not view_weight x DINO (docs/methods.md 2.3).
            region_weight=None if regions else 0.0,
            view_weight=None if regions else 1.0,
        )
        self.pend_centre(self.loss_fn.view_centering, t_view)
        self.pend_centre(self.loss_fn.region_centering, t_region)
        metrics: dict[str, Tensor | float] = {}
        if state.log:
            metrics = self._diagnostics(t_view, t_region, s.feats[0].pooled, temp)
            metrics.update({"loss_view": parts.view, "region_on": float(regions)})
            if regions:
                metrics.update(
                    {
                        "loss_region": parts.region,
                        "match_similarity": parts.similarity,
                        "match_coverage": parts.coverage,
                    }
                )
        return StepOutput.assemble(parts.total, [global_crop_koleo(self.cfg, s.feats)], metrics, state.log)

    def _diagnostics(
        self, t_view: list[Tensor], t_region: list[Tensor], pooled: Tensor, temp: float
    ) -> dict[str, Tensor | float]:
        metrics: dict[str, Tensor | float] = dict(
            collapse_diagnostics(self.loss_fn.teacher_view_probs(t_view, temp), pooled)
        )
        metrics["center_norm"] = self.loss_fn.center.norm()
        metrics["center_region_norm"] = self.loss_fn.center_region.norm()
        if t_region:
            metrics["region_teacher_entropy"] = entropy(self.loss_fn.teacher_region_probs(t_region, temp))
        return metrics


@register_method("esvit", sections={"esvit": EsViTConfig}, reads=("dino",))
def build_esvit(cfg: PretrainConfig) -> EsViT:
    return EsViT(cfg)
