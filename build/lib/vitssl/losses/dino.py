"""DINO self-distillation loss (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision
Transformers", arXiv 2104.14294, Algorithm 1 and section 3.1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from vitssl.losses.centering import Center
from vitssl.losses.terms import sum_terms


def dino_cross_entropy(student_logp: Tensor, teacher_p: Tensor) -> Tensor:
    """``mean_b(-sum_k P_t * log P_s)`` for one (teacher crop, student crop) pair."""
    return -(teacher_p * student_logp).sum(dim=-1).mean()


def crop_pairs(teacher_crops: int, student_crops: int) -> list[tuple[int, int]]:
    """The (teacher crop g, student crop v) pairs of multi-crop self-distillation: every pair except the same crop
    seen by both networks, which carries no information (kept only when there is a single crop)."""
    return [(g, v) for g in range(teacher_crops) for v in range(student_crops) if v != g or student_crops == 1]


class DINOLoss(nn.Module):
    """Cross-entropy between a centred, sharpened teacher and the student, over all crop pairs.

    For each teacher global crop ``g`` and each student crop ``v != g``:
    ``H(softmax((t_g - C) / tau_t), log_softmax(s_v / tau_s))``, averaged over the batch and over the pairs.
    The forward pass changes no state; the centre ``C`` moves only when :meth:`update_center` is called (once per
    optimiser step), so gradient accumulation and evaluation leave it alone. Everything is computed in fp32.

    Args:
        out_dim: number of prototypes K (width of the head output).
        student_temp: student temperature tau_s.
        center_momentum: momentum m of ``C <- m C + (1 - m) mean(t)``.
    """

    center: Tensor

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9) -> None:
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.centering = Center(self, "center", out_dim, center_momentum)

    def teacher_probs(self, teacher_out: Sequence[Tensor], teacher_temp: float) -> list[Tensor]:
        """Centred and sharpened teacher distributions, detached."""
        return self.centering.probs(teacher_out, teacher_temp)

    def forward(self, student_out: Sequence[Tensor], teacher_out: Sequence[Tensor], teacher_temp: float) -> Tensor:
        """Args:
            student_out: V tensors (B, K), the global crops first, in the same order as ``teacher_out``.
            teacher_out: G tensors (B, K), the teacher's outputs on the global crops.
            teacher_temp: teacher temperature tau_t for this step.

        Returns:
            The scalar loss, averaged over the G * (V - 1) pairs (or G * V when V == G == 1).
        """
        teacher_p = self.teacher_probs(teacher_out, teacher_temp)
        student_logp = [F.log_softmax(s.float() / self.student_temp, dim=-1) for s in student_out]
        pairs = crop_pairs(len(teacher_p), len(student_logp))
        total = sum_terms(dino_cross_entropy(student_logp[v], teacher_p[g]) for g, v in pairs)
        return total / len(pairs)

    def update_center(self, teacher_out: Sequence[Tensor], applied: Tensor | None = None) -> None:
        """``C <- m C + (1 - m) * mean(teacher logits)``, the mean over all crops and all processes (not where the
        device flag ``applied`` is False: a skipped step)."""
        self.centering.update(teacher_out, applied)
