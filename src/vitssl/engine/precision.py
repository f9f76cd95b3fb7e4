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

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring the gradients back to their true scale (before clipping)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    def state_dict(self) -> dict[str, Any] | None:
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
