"""DINO: self-distillation with no labels (Caron et al. 2021, arXiv 2104.14294; docs/methods.md section 1).

A student (backbone + head) sees all crops; a momentum teacher (an EMA of the student) sees the global crops.
The student matches the teacher's centred, sharpened distribution over K prototypes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vitssl.config import PretrainConfig
from vitssl.data.batches import ViewBatch
from vitssl.losses.dino import DINOLoss
from vitssl.methods.base import StepOutput
from vitssl.methods.diagnostics import collapse_diagnostics
from vitssl.methods.dino.config import DINOConfig
from vitssl.methods.dino_family import NUM_GLOBAL_CROPS, global_crop_koleo, student_and_teacher
from vitssl.methods.distillation import DistillationMethod
from vitssl.methods.registry import register_method
from vitssl.schedules import StepState

__all__ = ["DINO", "DINOConfig"]


class DINO(DistillationMethod):
    """Student, EMA teacher, DINO head and loss, with the schedules of docs/methods.md section 1.4."""

    name = "dino"

    def __init__(self, cfg: PretrainConfig) -> None:
        super().__init__(cfg, *student_and_teacher(cfg, heads=("head",)))
        self.loss_fn = DINOLoss(cfg.dino.out_dim, cfg.dino.student_temp, cfg.dino.center_momentum)

    def training_step(self, batch: ViewBatch, state: StepState) -> StepOutput:
        views = batch.views
        temp = state.values["teacher_temp"]
        with torch.no_grad():  # the teacher never learns by gradient
            teacher = self.teacher(views[:NUM_GLOBAL_CROPS]).view
        student = self.run("student", views)
        loss = self.loss_fn(student.view, teacher, temp)
        self.pend_centre(self.loss_fn.centering, teacher)
        metrics: dict[str, Tensor | float] = {}
        if state.log:
            metrics.update(collapse_diagnostics(self.loss_fn.teacher_probs(teacher, temp), student.feats[0].pooled))
            metrics["center_norm"] = self.loss_fn.center.norm()
        return StepOutput.assemble(loss, [global_crop_koleo(self.cfg, student.feats)], metrics, state.log)


@register_method("dino", sections={"dino": DINOConfig})
def build_dino(cfg: PretrainConfig) -> DINO:
    return DINO(cfg)
