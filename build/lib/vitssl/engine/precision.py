"""Mixed precision for the training step: autocast and, for fp16 on CUDA, a gradient scaler."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from vitssl.device import resolve_precision


class Precision:
    """Autocast to ``dtype`` (None: fp32) with a loss scaler when the dtype needs one (fp16 on CUDA).

    Args:
        name: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (``auto``: bf16 on GPUs that support it, fp32 on CPU).
        device: Where training runs.
    """

    def __init__(self, name: str, device: torch.device) -> None:
        self.device = device
        self.dtype = resolve_precision(name, device)
        needs_scaler = self.dtype == torch.float16 and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if needs_scaler else None
        self._skip: torch.Tensor | None = None

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        torch.autograd.backward(self.scaler.scale(loss) if self.scaler is not None else loss)

    def unscale_(self, optimizer: torch.optim.Optimizer, skip: torch.Tensor | None = None) -> None:
        """Bring the gradients back to their true scale (before clipping).

        Args:
            skip: A boolean device flag: True makes the coming :meth:`step` leave the weights and the optimiser's
                state untouched, decided on the device (no host synchronisation). Needs a fused optimiser.
        """
        if skip is not None and self.scaler is not None:
            # The scaler skips a step whose gradients are not finite, and then reads no flag of ours: make them so.
            grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            poison = torch.where(skip, float("nan"), 1.0).to(self.device)
            torch._foreach_mul_(grads, poison)
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        self._skip = skip

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        elif self._skip is not None:
            # Fused AdamW's own skip (the path GradScaler uses): no update, and its step count stays.
            optimizer.found_inf = self._skip.float()  # type: ignore[attr-defined]
            try:
                optimizer.step()
            finally:
                del optimizer.found_inf  # type: ignore[attr-defined]
        else:
            optimizer.step()
        self._skip = None

    def state_dict(self) -> dict[str, Any] | None:
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
