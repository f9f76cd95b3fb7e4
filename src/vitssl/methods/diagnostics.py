"""Collapse diagnostics of self-distillation (Caron et al. 2021, arXiv 2104.14294, section 5.3 discusses the two
collapse modes that centring and sharpening balance)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def entropy(probs: Sequence[Tensor]) -> Tensor:
    """Mean entropy of the rows of ``probs`` (any leading shapes)."""
    p = torch.cat([q.flatten(0, -2) for q in probs])
    return -(p * p.clamp_min(1e-12).log()).sum(-1).mean()


@torch.no_grad()
def collapse_diagnostics(teacher_probs: Sequence[Tensor], student_pooled: Tensor) -> dict[str, Tensor]:
    """Teacher entropy (-> 0: one-hot collapse), KL of the batch-mean teacher distribution to uniform (-> ln K:
    everything on one prototype), the prototypes in use (the perplexity of that batch-mean distribution,
    K * exp(-KL): K when the batch spreads evenly over all K, 1 when it sits on one; a teacher that narrows onto a
    few prototypes stops teaching the student anything new) and the spread of the student's normalised features
    (-> 0: one feature)."""
    probs = torch.cat([p.flatten(0, -2) for p in teacher_probs])
    mean_p = probs.mean(0)
    kl_uniform = (mean_p * (mean_p.clamp_min(1e-12).log() + math.log(mean_p.numel()))).sum()
    return {
        "teacher_entropy": entropy([probs]),
        "kl_to_uniform": kl_uniform,
        "prototypes_in_use": mean_p.numel() * torch.exp(-kl_uniform),
        "feature_std": feature_spread(student_pooled),
    }


@torch.no_grad()
def feature_spread(features: Tensor) -> Tensor:
    """Mean per-dimension standard deviation of the L2-normalised rows of ``features`` (n x d): near 1/sqrt(d)
    when they are spread over the sphere, near 0 when they collapse onto one direction."""
    return F.normalize(features.detach().float(), dim=-1).std(dim=0).mean()
