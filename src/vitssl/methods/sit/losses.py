"""SiT losses (Atito et al. 2021, "SiT: Self-supervised vIsion Transformer", arXiv 2104.03602).

Three tasks share one ViT (docs/methods.md section 3.3): rotation prediction (cross-entropy), contrastive learning
between two views (NT-Xent, SimCLR's loss) and image reconstruction (L1). They are combined with learned task
uncertainties or fixed weights. The masked variant (section 3.4) replaces NT-Xent by a symmetric InfoNCE between
a student on corrupted views and an EMA teacher on clean ones, and restricts the L1 to the corrupted pixels.

All functions are pure: no state, no side effects; the only cross-process step is the gathering of negatives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitssl.distributed import all_gather_with_grad, all_reduce_sum, rank, world_size
from vitssl.errors import VitsslError

__all__ = [
    "FixedWeighting",
    "InfoNCEScale",
    "Negatives",
    "UncertaintyWeighting",
    "gather_with_grad",
    "info_nce",
    "nt_xent",
    "reconstruction_l1",
    "rotation_loss",
    "symmetric_info_nce",
]


Negatives = Literal["per_process", "global"]


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every process along dim 0 with the gradient flowing back to every process.

    With ``negatives="global"`` a contrastive loss takes its keys from the whole global batch; the backward pass
    sends each process
    the gradients that all processes' queries give its keys, so after the trainer's gradient averaging the
    result equals the single-process loss over the global batch (not only this process's share of it).
    Identity in a single process.
    """
    return all_gather_with_grad(x)


def _keys(x: Tensor, negatives: Negatives) -> tuple[Tensor, int]:
    """The keys a contrastive loss compares its queries with, and the row of this process's first key among them:
    every process's rows (``"global"``) or only this process's (``"per_process"``)."""
    if negatives == "global":
        return gather_with_grad(x), rank() * x.shape[0]
    if negatives == "per_process":
        return x, 0
    raise VitsslError(f"unknown negatives {negatives!r}; use 'per_process' or 'global'")


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.5, negatives: Negatives = "global") -> Tensor:
    """NT-Xent (Chen et al. 2020, SimCLR), SiT's contrastive loss (Atito et al. 2021, section 3.3).

    Embeddings are L2-normalised; for the 2B rows ``[z1; z2]`` the positive of row i is row i + B (and of row
    i + B, row i); the negatives are the other 2B - 2 rows. The loss is the mean over this process's 2B queries.

    Args:
        z1: (B, D) embeddings of the first views.
        z2: (B, D) embeddings of the second views, row i being the same image as row i of ``z1``.
        temperature: Softmax temperature tau (0.5 in SiT).
        negatives: ``"global"``: when distributed, the keys come from every process (with gradient), so the
            loss equals the single-process loss on the global batch; ``"per_process"``: each process contrasts
            its own 2B rows only, as the authors' 2021 code does on each GPU (docs/methods.md 3.3). The two agree
            in a single process.

    Returns:
        The scalar loss (float32).
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise VitsslError(
            f"nt_xent needs two (B, D) tensors of the same shape, got {tuple(z1.shape)}, {tuple(z2.shape)}"
        )
    if temperature <= 0:
        raise VitsslError(f"nt_xent temperature must be > 0, got {temperature}")
    b = z1.shape[0]
    q = F.normalize(torch.cat([z1, z2]).float(), dim=-1)  # (2B, D): this process's queries
    k1, first = _keys(F.normalize(z1.float(), dim=-1), negatives)
    k2, _ = _keys(F.normalize(z2.float(), dim=-1), negatives)
    n = k1.shape[0]  # rows per view among the keys: the global batch, or this process's
    keys = torch.cat([k1, k2])  # (2N, D)
    logits = q @ keys.T / temperature
    own = torch.arange(b, device=q.device) + first  # this process's rows among the keys
    self_index = torch.cat([own, own + n])  # where each query sits among the keys
    positive = torch.cat([own + n, own])
    logits = logits.masked_fill(F.one_hot(self_index, 2 * n).bool(), float("-inf"))
    return F.cross_entropy(logits, positive)


def info_nce(query: Tensor, key: Tensor, temperature: float = 0.2, negatives: Negatives = "global") -> Tensor:
    """InfoNCE of ``query`` against ``key``: row i's positive is key row i, the negatives all other keys.

    Used by the masked SiT variant (docs/methods.md section 3.4) with the teacher's (detached) embeddings as keys.

    Args:
        query: (B, D) student embeddings.
        key: (B, D) teacher embeddings (detach them before calling: the teacher gets no gradient).
        temperature: Softmax temperature (0.2 in the masked variant).
        negatives: ``"global"`` (the authors' 2022 code: keys gathered from every process) or ``"per_process"``.

    Returns:
        The scalar loss (float32).
    """
    if query.shape != key.shape or query.ndim != 2:
        raise VitsslError(
            f"info_nce needs two (B, D) tensors of the same shape, got {tuple(query.shape)}, {tuple(key.shape)}"
        )
    q = F.normalize(query.float(), dim=-1)
    k, first = _keys(F.normalize(key.float(), dim=-1), negatives)
    labels = torch.arange(q.shape[0], device=q.device) + first
    return F.cross_entropy(q @ k.T / temperature, labels)


InfoNCEScale = Literal["two_tau_sum", "mean"]


def symmetric_info_nce(
    s1: Tensor,
    s2: Tensor,
    t1: Tensor,
    t2: Tensor,
    temperature: float = 0.2,
    scale: InfoNCEScale = "mean",
    negatives: Negatives = "global",
) -> Tensor:
    """Symmetric InfoNCE: student view 1 against teacher view 2 and student view 2 against teacher view 1.

    Args:
        s1: (B, D) student embeddings of the corrupted view 1.
        s2: (B, D) student embeddings of the corrupted view 2.
        t1: (B, D) teacher embeddings of the clean view 1 (detached).
        t2: (B, D) teacher embeddings of the clean view 2 (detached).
        temperature: Softmax temperature tau (0.2 in the masked variant).
        scale: How the two directions are combined. ``"two_tau_sum"``: each direction multiplied by 2 tau and the
            two summed, as the SiT authors' 2022 code does (the MoCo v3 convention, Chen et al. 2021, arXiv
            2104.02057, which makes the gradient scale independent of tau); ``"mean"``: the plain mean of the two
            (vitssl 0.1). ``two_tau_sum = 4 tau x mean``, i.e. 0.8 x the mean at tau = 0.2.
        negatives: Where the keys come from (:func:`info_nce`).

    Returns:
        The scalar loss (float32).
    """
    forward = info_nce(s1, t2, temperature, negatives)
    backward = info_nce(s2, t1, temperature, negatives)
    if scale == "two_tau_sum":
        return 2.0 * temperature * (forward + backward)
    if scale == "mean":
        return 0.5 * (forward + backward)
    raise VitsslError(f"unknown InfoNCE scale {scale!r}; use 'two_tau_sum' or 'mean'")


def rotation_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of the rotation head, (N, 4) logits against labels k in {0, 1, 2, 3}."""
    return F.cross_entropy(logits.float(), labels)


def reconstruction_l1(prediction: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """L1 between a reconstruction and the clean view.

    Args:
        prediction: (B, C, H, W) reconstruction, in normalised pixel space.
        target: (B, C, H, W) clean (augmented, rotated) views.
        mask: Optional (B, H, W) boolean mask of the corrupted pixels; when given, the mean runs over those pixels
            only (the masked variant); with no corrupted pixel at all the loss is 0 (still differentiable). When
            distributed, the mean is over the corrupted pixels of every process (the count is all-reduced), so
            that averaging the processes' losses and gradients gives the one-process mean over the global batch.

    Returns:
        The mean absolute error (float32).
    """
    if prediction.shape != target.shape:
        raise VitsslError(
            f"reconstruction shape {tuple(prediction.shape)} differs from the target's {tuple(target.shape)}"
        )
    error = (prediction.float() - target.float()).abs()
    if mask is None:
        return error.mean()
    weights = mask.unsqueeze(1).to(error.dtype)
    count = weights.sum().detach() * error.shape[1]
    per_process = all_reduce_sum(count.clone()) / world_size()  # the global count, shared out over the processes
    return (error * weights).sum() / per_process.clamp_min(1.0)


class UncertaintyWeighting(nn.Module):
    """Task weights learned from homoscedastic uncertainty (Kendall et al. 2018), as SiT combines its losses.

    ``L = sum_t exp(-a_t * s_t) * L_t + 0.5 * s_t`` (docs/methods.md section 3.3), one learned scalar ``s_t`` per task,
    starting at ``init``; ``a_t`` = 1 for classification-type losses (rotation, contrastive) and 0.5 for L1. A task
    with a large loss raises its ``s_t`` (lower weight) until the ``0.5 * s_t`` term balances it. The scalars are
    0-d parameters, so the optimiser's parameter groups give them no weight decay.

    Args:
        scales: The task names with their ``a_t``, e.g. ``{"rot": 1.0, "con": 1.0, "rec": 0.5}``.
        init: Initial value of every ``s_t`` (1 in SiT).
    """

    def __init__(self, scales: Mapping[str, float], init: float = 1.0) -> None:
        super().__init__()
        if not scales:
            raise VitsslError("UncertaintyWeighting needs at least one task")
        self.scales = dict(scales)
        self.log_vars = nn.ParameterDict({name: nn.Parameter(torch.tensor(float(init))) for name in self.scales})

    def weights(self) -> dict[str, Tensor]:
        """The current multipliers ``exp(-a_t * s_t)`` of each task's loss (detached)."""
        return {name: torch.exp(-a * self.log_vars[name].detach()) for name, a in self.scales.items()}

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        """The combined loss; ``losses`` must hold exactly the configured tasks."""
        if set(losses) != set(self.scales):
            raise VitsslError(f"UncertaintyWeighting got tasks {sorted(losses)}, expected {sorted(self.scales)}")
        total = torch.zeros((), device=self.log_vars[next(iter(self.scales))].device)
        for name, a in self.scales.items():
            s = self.log_vars[name]
            total = total + torch.exp(-a * s) * losses[name].float() + 0.5 * s
        return total


class FixedWeighting(nn.Module):
    """Fixed task weights: ``L = sum_t w_t * L_t`` (the alternative to :class:`UncertaintyWeighting`).

    Args:
        weights: The task names with their weights, e.g. ``{"rot": 1.0, "con": 1.0, "rec": 1.0}``.
    """

    def __init__(self, weights: Mapping[str, float]) -> None:
        super().__init__()
        if not weights:
            raise VitsslError("FixedWeighting needs at least one task")
        self.fixed = {name: float(w) for name, w in weights.items()}

    def weights(self) -> dict[str, Tensor]:
        """The task weights as tensors (for logging)."""
        return {name: torch.tensor(w) for name, w in self.fixed.items()}

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        if set(losses) != set(self.fixed):
            raise VitsslError(f"FixedWeighting got tasks {sorted(losses)}, expected {sorted(self.fixed)}")
        total = torch.zeros((), device=next(iter(losses.values())).device)
        for name, w in self.fixed.items():
            total = total + w * losses[name].float()
        return total
