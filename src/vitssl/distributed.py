"""Process-group helpers. Every function is a no-op (or the identity) in a single process."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Only the main process writes files and logs."""
    return rank() == 0


def init_from_env(device: torch.device) -> None:
    """Join the process group when started by torchrun (``WORLD_SIZE`` > 1); gloo on CPU, NCCL on CUDA."""
    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum a tensor over processes in place (cross-sample statistics such as DINO's centre)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_mean(tensor: Tensor) -> Tensor:
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= world_size()
    return tensor


def barrier() -> None:
    if is_distributed():
        dist.barrier()


@torch.no_grad()
def all_reduce_gradients_(parameters: list[torch.nn.Parameter]) -> None:
    """Average gradients over processes, one flat buffer per dtype (plain data parallelism without wrapping
    the method's modules; the method decides which modules exist and how they are called)."""
    if not is_distributed():
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for g in grads:
        by_dtype.setdefault(g.dtype, []).append(g)
    for group in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= world_size()
        offset = 0
        for g in group:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()
