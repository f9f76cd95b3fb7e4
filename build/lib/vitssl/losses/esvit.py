"""EsViT's view-level plus region-level self-distillation loss (Li et al. 2021, "Efficient Self-supervised Vision
Transformers for Representation Learning", arXiv 2106.09785, section 3.2; docs/methods.md section 2.2).

The view part is DINO's cross-entropy on the pooled view vectors. The region part matches every student region
token to the teacher region token of the other crop whose *backbone* feature is most similar (cosine), and asks
the student's region-head distribution to agree with that teacher token's centred, sharpened distribution.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitssl.losses.centering import Center
from vitssl.losses.dino import crop_pairs, dino_cross_entropy

# Rows of (tokens x K) processed at once by the region cross-entropy; bounds the temporary memory to about
# CHUNK_ELEMENTS floats however large the batch, the token count or K are.
CHUNK_ELEMENTS = 1 << 22


def match_regions(student_feat: Tensor, teacher_feat: Tensor) -> tuple[Tensor, Tensor]:
    """For each student region, the most similar teacher region of the same image.

    Args:
        student_feat: (B, N_s, D) backbone features of the student's crop.
        teacher_feat: (B, N_t, D) backbone features of the teacher's crop.

    Returns:
        ``(index, similarity)``: (B, N_s) argmax teacher positions (many-to-one allowed) and their cosine
        similarities. No gradient flows through the matching.
    """
    with torch.no_grad():
        s = F.normalize(student_feat.detach().float(), dim=-1)
        t = F.normalize(teacher_feat.detach().float(), dim=-1)
        similarity, index = torch.bmm(s, t.transpose(1, 2)).max(dim=-1)
    return index, similarity


class _MatchedCrossEntropy(torch.autograd.Function):
    """``mean_{b,i} -sum_k P_t[b, idx[b, i], k] * log_softmax(z[b, i])_k`` with bounded memory.

    Gathering the matched teacher rows would materialise a (B, N_s, K) target per crop pair and keep it for the
    backward pass. Instead the target is gathered chunk by chunk, and the backward uses the closed form
    ``d/dz = (softmax(z) - target) / rows`` (the targets sum to one), so only the inputs are kept.
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, teacher_p: Tensor, index: Tensor) -> Tensor:
        ctx.save_for_backward(z, teacher_p, index)
        total = z.new_zeros((), dtype=torch.float32)
        for rows, target in _chunks(z, teacher_p, index):
            total += -(target * F.log_softmax(rows.float(), dim=-1)).sum()
        return total / (z.shape[0] * z.shape[1])

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None, None]:
        z, teacher_p, index = ctx.saved_tensors
        grad = torch.empty_like(z)
        scale = grad_out / (z.shape[0] * z.shape[1])
        for (rows, target), out in zip(_chunks(z, teacher_p, index), _chunk_views(grad, z.shape[-1]), strict=True):
            out.copy_((F.softmax(rows.float(), dim=-1) - target) * scale)
        return grad, None, None


def _rows_per_chunk(tokens: int, k: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(1, tokens * k))


def _chunks(z: Tensor, teacher_p: Tensor, index: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
    """(student rows, gathered teacher rows) for consecutive groups of images."""
    b, n, k = z.shape
    step = _rows_per_chunk(n, k)
    for start in range(0, b, step):
        idx = index[start : start + step]
        target = torch.gather(teacher_p[start : start + step], 1, idx.unsqueeze(-1).expand(-1, -1, k))
        yield z[start : start + step], target


def _chunk_views(grad: Tensor, k: int) -> Iterator[Tensor]:
    b, n, _ = grad.shape
    step = _rows_per_chunk(n, k)
    for start in range(0, b, step):
        yield grad[start : start + step]


def matched_cross_entropy(student_logits: Tensor, teacher_p: Tensor, index: Tensor) -> Tensor:
    """Region cross-entropy of one crop pair: student logits (B, N_s, K) already divided by the student
    temperature, teacher probabilities (B, N_t, K), matches (B, N_s); averaged over tokens and images."""
    loss: Tensor = _MatchedCrossEntropy.apply(student_logits, teacher_p.detach().float(), index)
    return loss


@dataclass
class EsViTLossParts:
    """The total loss and its parts, each averaged over the crop pairs; ``similarity`` and ``coverage`` describe
    the region matches (mean best cosine, fraction of teacher tokens chosen by at least one student token)."""

    total: Tensor
    view: Tensor
    region: Tensor
    similarity: Tensor
    coverage: Tensor


class EsViTLoss(nn.Module):
    """View-level + region-level DINO loss over all (teacher global crop, student crop) pairs.

    For each teacher global crop ``g`` and student crop ``v != g`` the pair loss is
    ``view_weight * H(P_t[g], P_s[v]) + region_weight * mean_i H(R_t[g, j*(i)], R_s[v, i])`` with
    ``j*(i) = argmax_j cos(f_s[v, i], f_t[g, j])`` on backbone features; the total is the mean over pairs.
    Teacher distributions are centred (``center`` for views, ``center_region`` for regions) and sharpened by
    ``teacher_temp``. The forward pass changes no state: call :meth:`update_center` once per optimiser step.
    Everything is computed in fp32; the region term is computed in chunks so its memory does not grow with K.

    Args:
        out_dim: number of prototypes K of both heads.
        student_temp: student temperature.
        center_momentum: momentum of both centres.
        view_weight: weight of the view-level term (0.5 in the paper).
        region_weight: weight of the region-level term (0.5 in the paper; 0 gives DINO times ``view_weight``).
            The method passes ``view_weight=1`` to :meth:`parts` whenever the region term is off, so that its
            view-only phase trains on the plain DINO loss, as the authors' code does (docs/methods.md 2.3).
    """

    center: Tensor
    center_region: Tensor

    def __init__(
        self,
        out_dim: int,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        view_weight: float = 0.5,
        region_weight: float = 0.5,
    ) -> None:
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.view_weight = view_weight
        self.region_weight = region_weight
        self.view_centering = Center(self, "center", out_dim, center_momentum)
        self.region_centering = Center(self, "center_region", out_dim, center_momentum)  # over every region token

    def teacher_view_probs(self, teacher_view: Sequence[Tensor], teacher_temp: float) -> list[Tensor]:
        return self.view_centering.probs(teacher_view, teacher_temp)

    def teacher_region_probs(self, teacher_region: Sequence[Tensor], teacher_temp: float) -> list[Tensor]:
        return self.region_centering.probs(teacher_region, teacher_temp)

    def parts(
        self,
        student_view: Sequence[Tensor],
        student_region: Sequence[Tensor],
        student_feat: Sequence[Tensor],
        teacher_view: Sequence[Tensor],
        teacher_region: Sequence[Tensor],
        teacher_feat: Sequence[Tensor],
        teacher_temp: float,
        region_weight: float | None = None,
        view_weight: float | None = None,
    ) -> EsViTLossParts:
        """The loss and its parts. ``region_weight`` and ``view_weight`` override the constructor's (e.g. region
        weight 0 and view weight 1 before the region loss starts: the region term is then not computed at all
        and the total is the plain DINO loss)."""
        w_region = self.region_weight if region_weight is None else region_weight
        w_view = self.view_weight if view_weight is None else view_weight
        t_view = self.teacher_view_probs(teacher_view, teacher_temp)
        s_view = [F.log_softmax(s.float() / self.student_temp, dim=-1) for s in student_view]
        t_region = self.teacher_region_probs(teacher_region, teacher_temp) if w_region else []
        zero = s_view[0].new_zeros(())
        view_total, region_total, sim_total, cover_total = zero, zero, zero, zero
        pairs = crop_pairs(len(t_view), len(s_view))
        for g, v in pairs:
            view_total = view_total + dino_cross_entropy(s_view[v], t_view[g])
            if not w_region:
                continue
            index, similarity = match_regions(student_feat[v], teacher_feat[g])
            logits = student_region[v].float() / self.student_temp
            region_total = region_total + matched_cross_entropy(logits, t_region[g], index)
            sim_total = sim_total + similarity.mean()
            cover_total = cover_total + _coverage(index, teacher_feat[g].shape[1])
        view, region = view_total / len(pairs), region_total / len(pairs)
        return EsViTLossParts(
            total=w_view * view + w_region * region,
            view=view.detach(),
            region=region.detach(),
            similarity=sim_total / len(pairs),
            coverage=cover_total / len(pairs),
        )

    def forward(
        self,
        student_view: Sequence[Tensor],
        student_region: Sequence[Tensor],
        student_feat: Sequence[Tensor],
        teacher_view: Sequence[Tensor],
        teacher_region: Sequence[Tensor],
        teacher_feat: Sequence[Tensor],
        teacher_temp: float,
    ) -> Tensor:
        """Args (lists with one entry per crop):
            student_view: V tensors (B, K), all crops, the global crops first in the teacher's order.
            student_region: V tensors (B, N_v, K), the region head on every region token.
            student_feat: V tensors (B, N_v, D), the backbone's region tokens (used only for matching).
            teacher_view: G tensors (B, K) for the global crops.
            teacher_region: G tensors (B, N_g, K).
            teacher_feat: G tensors (B, N_g, D).
            teacher_temp: teacher temperature of this step.

        Returns:
            The scalar loss averaged over the G * (V - 1) pairs.
        """
        return self.parts(
            student_view, student_region, student_feat, teacher_view, teacher_region, teacher_feat, teacher_temp
        ).total

    def update_center(
        self, teacher_view: Sequence[Tensor], teacher_region: Sequence[Tensor], applied: Tensor | None = None
    ) -> None:
        """Move both centres towards the mean teacher logits of all global crops of the global batch: the view
        centre over the view vectors, the region centre over every region token (neither where the device flag
        ``applied`` is False: a skipped step)."""
        self.view_centering.update(teacher_view, applied)
        if teacher_region:
            self.region_centering.update(teacher_region, applied)


def _coverage(index: Tensor, teacher_tokens: int) -> Tensor:
    """Mean over images of the fraction of teacher tokens that at least one student token matched."""
    hits = torch.zeros(index.shape[0], teacher_tokens, device=index.device)
    hits.scatter_(1, index, 1.0)
    return hits.mean()
