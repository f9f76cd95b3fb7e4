"""Self-distillation with a momentum teacher: what DINO (Caron et al. 2021, arXiv 2104.14294, section 3.1 and
Algorithm 1; docs/methods.md section 1) and the methods built on it (EsViT, Li et al. 2021, arXiv 2106.09785;
docs/methods.md section 2) share beyond their losses.

A student learns by gradient; a teacher of the same architecture follows it as an exponential moving average
(:class:`~vitssl.methods.teacher.EMATeacher`) and its centred, sharpened outputs are the student's targets
(:class:`~vitssl.losses.centering.Center`). A subclass builds the two networks and its loss and writes its
``training_step``; this base owns the rest of the step's life cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from torch import Tensor, nn

from vitssl.config import PretrainConfig
from vitssl.data.views.multicrop import CropSpec
from vitssl.losses.centering import Center
from vitssl.methods.base import Method
from vitssl.methods.dino_family import dino_schedule, dino_views
from vitssl.methods.teacher import EMATeacher, drop_last_layer_grads
from vitssl.models.backbones import Backbone
from vitssl.optim import param_groups
from vitssl.schedules import StepState

__all__ = ["DistillationMethod"]


class DistillationMethod(Method):
    """A student, its EMA teacher and the centres of the teacher's outputs.

    The base keeps the teacher an EMA of the student after every applied optimiser step (momentum: the
    ``teacher_momentum`` value of :meth:`schedule`), moves every centre towards the teacher outputs a step
    handed to :meth:`pend_centre` (after the optimiser step, so gradient accumulation and skipped steps leave
    the centres alone), drops the gradients of the heads' last layers while ``dino.freeze_last_layer`` epochs
    have not passed, and evaluates the teacher's backbone. Its views and schedules are DINO's (multi-crop;
    cosine teacher momentum, warmed-up teacher temperature, from the ``dino`` section); a subclass may
    override them.

    Args:
        cfg: The run's configuration (the ``dino`` section is read).
        student: The trained network: a module dict with a ``backbone`` entry and the heads.
        teacher: The teacher network, built like the student (without drop-path); its parameters must exist in
            the student under the same names. It is set to the student's weights and frozen.
    """

    def __init__(self, cfg: PretrainConfig, student: nn.ModuleDict, teacher: nn.ModuleDict) -> None:
        super().__init__()
        self.cfg = cfg
        self.student = student
        self.teacher = teacher
        self.ema = EMATeacher(teacher, student)
        self._pending: dict[Center, list[Tensor]] = {}

    # -- data and schedules -------------------------------------------------------------------------------
    @property
    def views(self) -> list[CropSpec]:
        return dino_views(self.cfg)

    def schedule(self, step: int, steps_per_epoch: int, total_steps: int) -> dict[str, float]:
        return dino_schedule(self.cfg, step, steps_per_epoch, total_steps)

    # -- around the optimiser step ------------------------------------------------------------------------
    def pend_centre(self, centre: Center, teacher_out: Sequence[Tensor]) -> None:
        """Keep teacher outputs for ``centre``'s update after the optimiser step: the centre must not move
        between the micro-batches of one step, and not at all when the step is skipped."""
        self._pending.setdefault(centre, []).extend(teacher_out)

    def last_layer_heads(self) -> list[nn.Module]:
        """The student's heads whose last (prototype) layer stays fixed during the first epoch(s): every entry
        but the backbone (entries without a ``last_layer`` are left alone)."""
        return [module for name, module in self.student.items() if name != "backbone"]

    def before_optimizer_step(self, state: StepState) -> None:
        if state.epoch_float < self.cfg.dino.freeze_last_layer:
            drop_last_layer_grads(self.last_layer_heads())

    def after_optimizer_step(self, state: StepState) -> None:
        self.ema.update(state.values["teacher_momentum"], state.applied)
        for centre, rows in self._pending.items():  # in the order the step first handed them over
            if rows:
                centre.update(rows, state.applied)
        self.discard_pending()

    def discard_pending(self) -> None:
        self._pending = {}

    # -- networks -----------------------------------------------------------------------------------------
    def trained_modules(self) -> dict[str, nn.Module]:
        return {"student": self.student}

    def backbones(self) -> list[nn.Module]:
        return [self.student["backbone"], self.teacher["backbone"]]

    def param_groups(self) -> list[dict[str, Any]]:
        return param_groups(self.student.named_parameters())

    def eval_backbone(self) -> Backbone:
        """The teacher's backbone, the network DINO and EsViT evaluate (docs/methods.md 1.5)."""
        return cast(Backbone, self.teacher["backbone"])
