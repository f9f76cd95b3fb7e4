"""DINO's centring and sharpening of the teacher's outputs (Caron et al. 2021, arXiv 2104.14294, section 3.1
and Algorithm 1; docs/methods.md section 1.3).

Centring subtracts a running mean C of the teacher's logits (it keeps one prototype from dominating); sharpening
divides by a low temperature (it keeps the distribution from going uniform). Together they avoid collapse. The
update of C is separate from its use, so gradient accumulation and evaluation leave it alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitssl.distributed import all_reduce_sum


class Center:
    """A running centre ``C`` (1 x K) of teacher logits, shared by DINO's and EsViT's losses.

    The centre is a buffer of the module that owns it, registered under ``name``, so it follows the owner's
    ``.to()``, state dict and checkpoints under the owner's own key (``loss_fn.center``) while this object keeps
    the one implementation of its use and its update.

    Args:
        owner: The module the buffer belongs to (a loss).
        name: The buffer's name on ``owner``.
        dim: Number of prototypes K.
        momentum: ``m`` of ``C <- m C + (1 - m) mean(rows)``.
    """

    def __init__(self, owner: nn.Module, name: str, dim: int, momentum: float = 0.9) -> None:
        owner.register_buffer(name, torch.zeros(1, dim))
        self.owner, self.name, self.momentum = owner, name, momentum

    @property
    def value(self) -> Tensor:
        value: Tensor = getattr(self.owner, self.name)  # the buffer registered in __init__
        return value

    def probs(self, teacher_out: Sequence[Tensor], temperature: float) -> list[Tensor]:
        """``softmax((t - C) / temperature)`` for each tensor (any leading shape), detached and in fp32."""
        center = self.value
        return [F.softmax((t.detach().float() - center) / temperature, dim=-1) for t in teacher_out]

    @torch.no_grad()
    def update(self, rows: Sequence[Tensor], applied: Tensor | None = None) -> None:
        """Move ``C`` towards the mean of ``rows`` (tensors (..., K)) over every row of every process; not where
        the device flag ``applied`` says the step was skipped (its rows may not be finite)."""
        batch = torch.cat([r.detach().float().reshape(-1, r.shape[-1]) for r in rows])
        stats = torch.cat([batch.sum(dim=0), batch.new_tensor([batch.shape[0]])])
        all_reduce_sum(stats)  # sums and counts of all processes: the mean of the global batch
        mean = stats[:-1] / stats[-1]
        if applied is None:
            self.value.mul_(self.momentum).add_(mean.unsqueeze(0), alpha=1 - self.momentum)
            return
        moved = self.value * self.momentum + mean.unsqueeze(0) * (1 - self.momentum)
        self.value.copy_(torch.where(applied, moved, self.value))
