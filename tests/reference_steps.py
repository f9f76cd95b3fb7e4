"""Pieces of the hand-written reference training steps that the parity tests share: the schedules and AdamW,
written from their papers (not from vitssl's code)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

BETAS, EPS = (0.9, 0.999), 1e-8


def cosine(step: int, total: int, base: float, final: float, warmup: int = 0) -> float:
    """Linear warm-up from 0 over ``warmup`` steps, then half a cosine from ``base`` to ``final`` (DINO's schedules,
    which the masked SiT code reuses). The warm-up reaches ``base`` at step ``warmup`` (vitssl); DINO's code reaches
    it one step earlier (a linspace that includes its end point), a documented difference of at most base / warmup
    per step."""
    if step < warmup:
        return base * step / warmup
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


class ReferenceAdamW:
    """AdamW's state per parameter name, and its update."""

    def __init__(self) -> None:
        self.state: dict[str, dict[str, Tensor | int]] = {}

    def update(self, name: str, p: Tensor, lr: float, decay: float) -> None:
        """Decoupled weight decay (Loshchilov and Hutter 2019), then Adam with bias correction."""
        state = self.state.setdefault(name, {"t": 0, "m": torch.zeros_like(p), "v": torch.zeros_like(p)})
        state["t"] = t = int(state["t"]) + 1
        m = state["m"] = BETAS[0] * state["m"] + (1 - BETAS[0]) * p.grad
        v = state["v"] = BETAS[1] * state["v"] + (1 - BETAS[1]) * p.grad**2
        p.mul_(1 - lr * decay)
        m_hat, v_hat = m / (1 - BETAS[0] ** t), v / (1 - BETAS[1] ** t)
        p.sub_(lr * m_hat / (v_hat.sqrt() + EPS))
