"""Process-group helpers for training under ``torchrun`` (gloo on CPU, NCCL on CUDA).

Every function is a no-op (or the identity) in a single process, so losses, methods and the trainer call them
unconditionally. Cross-sample statistics (DINO's centre, contrastive negatives, BatchNorm statistics) all go
through the helpers here, which is what makes N processes x B/N images equal to one process x B images.
"""

from __future__ import annotations

import atexit
import os
import warnings

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import Tensor, nn


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Only the main process writes files and logs."""
    return rank() == 0


def init_from_env(device: torch.device) -> torch.device:
    """Join the process group when started by torchrun (``WORLD_SIZE`` > 1); gloo on CPU, NCCL on CUDA.

    Returns the device this process should use: on CUDA, the GPU of its ``LOCAL_RANK``.
    """
    if device.type == "cuda" and device.index is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    backend = "nccl" if device.type == "cuda" else "gloo"
    if "TORCHELASTIC_RESTART_COUNT" in os.environ:
        # torchrun keeps one key-value store across the restarts of a group (--max-restarts); each attempt gets
        # its own key space, so a restarted group never reads the addresses of the processes that died.
        agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
        store = dist.TCPStore(
            os.environ["MASTER_ADDR"],
            int(os.environ["MASTER_PORT"]),
            int(os.environ["WORLD_SIZE"]),
            is_master=not agent_store and int(os.environ["RANK"]) == 0,  # rank 0 hosts it unless torchrun's agent does
        )
        attempt = dist.PrefixStore(f"vitssl/attempt{os.environ['TORCHELASTIC_RESTART_COUNT']}", store)
        dist.init_process_group(
            backend, store=attempt, rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"])
        )
    else:
        dist.init_process_group(backend=backend)
    atexit.register(leave)
    return device


def leave() -> None:
    """Leave the process group (at exit of a process that :func:`init_from_env` made join one).

    A process that exits while still in a gloo group can abort in the group's teardown ("terminate called
    without an active exception") when another process is still working, e.g. rank 0 writing the last
    checkpoint: torchrun then reports the finished run as failed, and under ``--max-restarts`` starts it again.
    """
    if is_distributed():
        dist.destroy_process_group()


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum a tensor over processes in place (no gradient; e.g. DINO's centre statistics)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_mean(tensor: Tensor) -> Tensor:
    """Average a tensor over processes in place (no gradient; e.g. logged losses and metrics)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= world_size()
    return tensor


def all_reduce_max(tensor: Tensor) -> Tensor:
    """The element-wise maximum of a tensor over processes, in place (no gradient)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def all_gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` of every process along dim 0 (rank order), differentiably.

    The backward pass sends each process the gradients that every process's loss gives its slice, so a loss on
    the gathered tensor (contrastive negatives) gets exactly the single-process gradient once the trainer
    averages gradients. The identity in a single process.
    """
    if not is_distributed() or world_size() == 1:
        return x
    with warnings.catch_warnings():  # the public differentiable collectives are marked deprecated, not replaced
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(dist_fn.all_gather(x.contiguous()))


def differentiable_all_reduce_sum(x: Tensor) -> Tensor:
    """The sum of ``x`` over processes, with the gradient flowing back to every process's ``x``."""
    if not is_distributed() or world_size() == 1:
        return x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return dist_fn.all_reduce(x, op=dist.ReduceOp.SUM)


def all_gather_object(obj: object) -> list[object]:
    """Every process's ``obj`` (picklable), in rank order; ``[obj]`` in a single process."""
    if not is_distributed():
        return [obj]
    out: list[object] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if is_distributed():
        dist.barrier()


class CrossProcessBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the samples of every process, for process groups where ``nn.SyncBatchNorm`` cannot run
    (it needs CUDA tensors; on CPU with gloo it raises).

    The batch mean and variance are computed from per-process sums reduced with a differentiable all-reduce
    (two passes: the mean, then the squared deviations from it, for the same accuracy as a one-process
    BatchNorm), so activations and gradients equal those of one process holding the whole batch.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or not is_distributed():
            return super().forward(x)
        flat = x.transpose(0, 1).reshape(x.shape[1], -1)  # (C, samples): BatchNorm1d on (N, C) or (N, C, L)
        count = differentiable_all_reduce_sum(flat.new_tensor([float(flat.shape[1])]).detach())
        mean = differentiable_all_reduce_sum(flat.sum(dim=1)) / count
        var = differentiable_all_reduce_sum(((flat - mean[:, None]) ** 2).sum(dim=1)) / count
        with torch.no_grad():
            self._update_running_stats(mean, var, count)
        shape = [1, -1] + [1] * (x.ndim - 2)
        y = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y

    def _update_running_stats(self, mean: Tensor, var: Tensor, count: Tensor) -> None:
        if (
            not self.track_running_stats
            or self.running_mean is None
            or self.running_var is None
            or self.num_batches_tracked is None
        ):
            return
        self.num_batches_tracked += 1
        m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        unbiased = var * count / (count - 1).clamp_min(1)
        self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
        self.running_var.mul_(1 - m).add_(unbiased.detach(), alpha=m)


def synchronise_batch_norm(module: nn.Module, device: torch.device) -> nn.Module:
    """Make every BatchNorm of ``module`` use the statistics of all processes: ``nn.SyncBatchNorm`` on CUDA,
    :class:`CrossProcessBatchNorm` elsewhere. Unchanged in a single process. Weights and buffers are kept."""
    if not is_distributed() or world_size() == 1:
        return module
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert(module)


def _convert(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.BatchNorm1d) and not isinstance(module, CrossProcessBatchNorm):
        new = CrossProcessBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        # The same parameter and buffer objects, so optimisers and EMA pairs built before still point at them.
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        converted = _convert(child)
        if converted is not child:
            setattr(module, name, converted)
    return module
