"""DINO self-distillation loss (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision
Transformers", arXiv 2104.14294, Algorithm 1 and section 3.1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitssl.distributed import all_reduce_sum


def dino_cross_entropy(student_logp: Tensor, teacher_p: Tensor) -> Tensor:
    """``mean_b(-sum_k P_t * log P_s)`` for one (teacher crop, student crop) pair."""
    return -(teacher_p * student_logp).sum(dim=-1).mean()


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
        self.register_buffer("center", torch.zeros(1, out_dim))

    def teacher_probs(self, teacher_out: Sequence[Tensor], teacher_temp: float) -> list[Tensor]:
        """Centred and sharpened teacher distributions, detached."""
        return [F.softmax((t.detach().float() - self.center) / teacher_temp, dim=-1) for t in teacher_out]

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
        total = student_logp[0].new_zeros(())
        pairs = 0
        for g, p in enumerate(teacher_p):
            for v, logp in enumerate(student_logp):
                if v == g and len(student_logp) > 1:
                    continue  # the same view seen by both networks carries no information
                total = total + dino_cross_entropy(logp, p)
                pairs += 1
        return total / pairs

    @torch.no_grad()
    def update_center(self, teacher_out: Sequence[Tensor]) -> None:
        """``C <- m C + (1 - m) * mean(teacher logits)``, the mean over all crops and all processes."""
        batch = torch.cat([t.detach().float() for t in teacher_out])
        stats = torch.cat([batch.sum(dim=0), batch.new_tensor([batch.shape[0]])])
        all_reduce_sum(stats)
        mean = stats[:-1] / stats[-1]
        self.center.mul_(self.center_momentum).add_(mean.unsqueeze(0), alpha=1 - self.center_momentum)
