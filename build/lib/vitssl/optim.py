"""Optimiser building blocks: parameter groups, per-tensor clipping, teacher EMA."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn


def param_groups(named_parameters: Iterable[tuple[str, nn.Parameter]]) -> list[dict]:
    """Two groups: regularised weights, and biases + every 1-D tensor (norm weights, gains, tokens' norms)
    without weight decay, as in DINO. Frozen parameters are left out.

    The ``apply_wd`` flag tells the trainer which group follows the weight-decay schedule.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in named_parameters:
        if not param.requires_grad:
            continue
        (no_decay if name.endswith(".bias") or param.ndim <= 1 else decay).append(param)
    return [
        {"params": decay, "apply_wd": True},
        {"params": no_decay, "apply_wd": False, "weight_decay": 0.0},
    ]


@torch.no_grad()
def clip_gradients_per_tensor_(parameters: Iterable[nn.Parameter], max_norm: float) -> Tensor:
    """Scale each parameter's gradient so its own L2 norm is at most ``max_norm`` (DINO clips per tensor, not
    the global norm). Returns the norms before clipping.

    Three foreach kernels for all tensors (norms, scales, multiply) instead of three small ops per tensor, and no
    host synchronisation: the scale is 1 where a gradient is already short enough.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(0)
    norms = torch.stack(torch._foreach_norm(grads)).float()
    scales = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for dtype in {g.dtype for g in grads}:  # one foreach multiply per gradient dtype
        same = [i for i, g in enumerate(grads) if g.dtype == dtype]
        torch._foreach_mul_([grads[i] for i in same], list(scales[same].to(dtype).unbind()))
    return norms


@torch.no_grad()
def ema_update_(
    teacher: Sequence[Tensor], student: Sequence[Tensor], momentum: float, applied: Tensor | None = None
) -> None:
    """``theta_t <- m * theta_t + (1 - m) * theta_s`` for matching parameter lists (foreach: one kernel launch
    per group of tensors instead of one per tensor).

    Args:
        applied: A boolean device flag: when False the step was skipped and the teacher keeps its weights
            (``m`` becomes 1 on the device, with no host synchronisation). None: always update.
    """
    teacher = list(teacher)
    if applied is None:
        torch._foreach_mul_(teacher, momentum)
        torch._foreach_add_(teacher, list(student), alpha=1.0 - momentum)
        return
    keep = torch.where(applied, momentum, 1.0).to(teacher[0].dtype)
    torch._foreach_mul_(teacher, keep)
    torch._foreach_add_(teacher, torch._foreach_mul(list(student), 1.0 - keep))


def build_optimizer(
    groups: list[dict], lr: float, betas: Sequence[float], device: torch.device, fused: bool | None = None
) -> torch.optim.AdamW:
    """AdamW, fused or foreach; lr and weight decay are set every step.

    Args:
        fused: One fused kernel (default on CUDA). The fused AdamW is also the one that can skip a step on the
            device (its ``found_inf`` flag), so ``train.nonfinite_check=device`` asks for it on any device.
    """
    fused = device.type == "cuda" if fused is None else fused
    return torch.optim.AdamW(groups, lr=lr, betas=(betas[0], betas[1]), fused=fused, foreach=None if fused else True)
