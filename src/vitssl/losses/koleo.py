"""The KoLeo regulariser: spread a batch's features evenly over the sphere (Sablayrolles et al. 2019,
"Spreading vectors for similarity search", arXiv 1806.03198; used on the student's [CLS] by DINOv2, Oquab et
al. 2023, arXiv 2304.07193, with weight 0.1).

It is the Kozachenko-Leonenko estimate of the differential entropy of the L2-normalised features, up to
constants: ``-1/n sum_i log(min_{j != i} ||x_i - x_j||)``. Maximising that entropy pushes every feature away from
its nearest neighbour in the batch, which counters the dimensional collapse of self-distillation on small data
and suits nearest-neighbour evaluation. Under data parallelism each process regularises its own batch, as in
DINOv2.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from vitssl.losses.terms import WeightedTerm, sum_terms

__all__ = ["koleo_loss", "koleo_term"]


def koleo_loss(features: Tensor, eps: float = 1e-8) -> Tensor:
    """KoLeo loss of ``features`` (n x d, n >= 2): the mean negative log distance of each L2-normalised row to
    its nearest other row. Identical rows give a large loss (``-log eps``), not an infinite one."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"koleo_loss needs an (n, d) batch with n >= 2, got shape {tuple(features.shape)}")
    x = F.normalize(features.float(), dim=-1, eps=eps)
    with torch.no_grad():  # which neighbour is nearest is a choice, not a function to differentiate
        similarity = x @ x.T
        similarity.fill_diagonal_(-2.0)  # below any cosine similarity: a row is never its own neighbour
        nearest = similarity.argmax(dim=1)
    distance = (x - x[nearest]).norm(dim=-1)
    return -torch.log(distance + eps).mean()


def koleo_term(batches: Sequence[Tensor], weight: float, name: str = "koleo") -> WeightedTerm | None:
    """The KoLeo regulariser of a method: the mean of :func:`koleo_loss` over ``batches`` (one (n, d) batch per
    view: each view is regularised on its own, as DINOv2 does per global crop) with its loss ``weight``; None
    when the weight is 0, so a run without the regulariser computes nothing for it."""
    if weight == 0:
        return None
    return WeightedTerm(name, sum_terms(koleo_loss(b) for b in batches) / len(batches), weight)
