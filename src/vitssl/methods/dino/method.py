"""DINO: self-distillation with no labels (Caron et al. 2021, arXiv 2104.14294; docs/methods.md section 1).

A student (backbone + head) sees all crops; a momentum teacher (an EMA of the student) sees the global crops.
The student matches the teacher's centred, sharpened distribution over K prototypes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from vitssl.config import PretrainConfig
from vitssl.data.batches import ViewBatch
from vitssl.data.views.multicrop import CropSpec
from vitssl.losses.dino import DINOLoss
from vitssl.methods.base import Method, StepOutput
from vitssl.methods.diagnostics import collapse_diagnostics
from vitssl.methods.dino.config import DINOConfig
from vitssl.methods.dino_family import (
    NUM_GLOBAL_CROPS,
    dino_schedule,
    dino_views,
    student_and_teacher,
    with_koleo,
)
from vitssl.methods.registry import register_method
from vitssl.methods.teacher import drop_last_layer_grads
from vitssl.models.backbones import Backbone
from vitssl.optim import param_groups
from vitssl.schedules import StepState

__all__ = ["DINO", "DINOConfig"]


class DINO(Method):
    """Student, EMA teacher, DINO head and loss, with the schedules of docs/methods.md section 1.4."""

    name = "dino"

    def __init__(self, cfg: PretrainConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.student, self.teacher, self.ema = student_and_teacher(cfg, heads=("head",))
        self.loss_fn = DINOLoss(cfg.dino.out_dim, cfg.dino.student_temp, cfg.dino.center_momentum)
        self._pending_teacher: list[Tensor] = []

    @property
    def views(self) -> list[CropSpec]:
        return dino_views(self.cfg)

    def schedule(self, step: int, steps_per_epoch: int, total_steps: int) -> dict[str, float]:
        return dino_schedule(self.cfg, step, steps_per_epoch, total_steps)

    def training_step(self, batch: ViewBatch, state: StepState) -> StepOutput:
        views = batch.views
        temp = state.values["teacher_temp"]
        with torch.no_grad():  # the teacher never learns by gradient
            teacher = self.teacher(views[:NUM_GLOBAL_CROPS]).view
        student = self.run("student", views)
        loss = self.loss_fn(student.view, teacher, temp)
        metrics: dict[str, Tensor | float] = {}
        loss = with_koleo(loss, self.cfg, student.feats, metrics, state.log)
        self._pending_teacher.extend(teacher)
        if state.log:
            metrics.update(collapse_diagnostics(self.loss_fn.teacher_probs(teacher, temp), student.feats[0].pooled))
            metrics["center_norm"] = self.loss_fn.center.norm()
        return StepOutput(loss=loss, metrics=metrics)

    def before_optimizer_step(self, state: StepState) -> None:
        if state.epoch_float < self.cfg.dino.freeze_last_layer:
            drop_last_layer_grads([self.student["head"]])

    def after_optimizer_step(self, state: StepState) -> None:
        self.ema.update(state.values["teacher_momentum"], state.applied)
        if self._pending_teacher:
            self.loss_fn.update_center(self._pending_teacher, state.applied)
        self._pending_teacher = []

    def discard_pending(self) -> None:
        self._pending_teacher = []

    def param_groups(self) -> list[dict[str, Any]]:
        return param_groups(self.student.named_parameters())

    def eval_backbone(self) -> Backbone:
        backbone: nn.Module = self.teacher["backbone"]
        return backbone  # type: ignore[return-value]


@register_method("dino", sections={"dino": DINOConfig})
def build_dino(cfg: PretrainConfig) -> DINO:
    return DINO(cfg)
