"""Data parallelism for the trainer: DistributedDataParallel around the method's trained modules under torchrun,
nothing in a single process."""

from __future__ import annotations

import contextlib
import inspect
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from vitssl import distributed as dist
from vitssl.errors import VitsslError
from vitssl.methods.base import Method

# Newer torch renames DDP's broadcast_buffers=False to forward_sync_buffers=False (and warns about the old name).
_NO_BUFFER_SYNC: dict[str, Any] = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    else {"broadcast_buffers": False}
)


class DataParallel:
    """Routes the method's trained modules through DistributedDataParallel (gradients are averaged during
    backward, bucket by bucket); the teacher is never wrapped.

    Args:
        method: The method; its ``trained_modules()`` are wrapped.
        params: The optimised parameters: each must belong to a trained module, or its gradient would stay local.
        device: The process's device.
    """

    def __init__(self, method: Method, params: list[torch.nn.Parameter], device: torch.device) -> None:
        self.wrapped: list[DistributedDataParallel] = []
        if not dist.is_distributed():
            return
        trained = {id(p) for m in method.trained_modules().values() for p in m.parameters()}
        stray = [p for p in params if id(p) not in trained]
        if stray:
            raise VitsslError(
                f"{len(stray)} optimised parameter(s) of method '{method.name}' belong to no trained module; "
                "list their module in Method.trained_modules() so their gradients are averaged across processes"
            )
        self._device_ids = [device.index] if device.type == "cuda" else None
        self._find_unused = method.may_skip_parameters
        method.wrap_trained_modules(self._wrap)

    def _wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        if not any(p.requires_grad for p in module.parameters()):
            return module
        ddp = DistributedDataParallel(
            module,
            device_ids=self._device_ids,
            find_unused_parameters=self._find_unused,
            **_NO_BUFFER_SYNC,  # BatchNorm statistics are synchronised in the forward pass instead
        )
        self.wrapped.append(ddp)
        return ddp

    def sync(self, enabled: bool) -> contextlib.ExitStack[bool | None]:
        """Accumulation micro-batches before the last one skip the gradient all-reduce (DDP's ``no_sync``)."""
        stack = contextlib.ExitStack()
        if not enabled:
            for module in self.wrapped:
                stack.enter_context(module.no_sync())
        return stack
