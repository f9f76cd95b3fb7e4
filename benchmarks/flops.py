"""FLOPs of a training step and the matmul rate of its own GEMMs.

``count_step(fn)`` runs ``fn`` (one training step: forward, backward, update) once under
``torch.utils.flop_counter.FlopCounterMode`` and, in the same pass, records every GEMM (``mm``, ``addmm``,
``bmm``, ``baddbmm``) with its shapes, strides and dtype. ``matmul_rate(calls)`` replays exactly those GEMMs
(same shapes, same transposed or not layouts, same dtype, as many times as the step makes them) on fresh tensors
and returns the rate they reach: the matmul rate this machine delivers on this model's shapes, the denominator
of the utilisation. ``square_matmul_gflops`` is the usual 2048 x 2048 reference, for context.

torch's counter knows the CUDA attention kernels but not the CPU one (``_scaled_dot_product_flash_attention_for
_cpu``): :func:`register_cpu_attention_formulas` adds it with torch's own SDPA formulas, so fused attention on CPU
is counted like the explicit ``bmm`` attention it replaces.

Imports only torch: the peer's interpreter (no vitssl) uses it too.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
GEMM_OPS = {
    aten.mm.default: "mm",
    aten.addmm.default: "addmm",
    aten.bmm.default: "bmm",
    aten.baddbmm.default: "baddbmm",
}


@dataclass(frozen=True)
class TensorSpec:
    """Enough of a tensor to make another like it: shape, strides, dtype and device."""

    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype
    device: str

    @staticmethod
    def of(t: torch.Tensor) -> TensorSpec:
        return TensorSpec(tuple(t.shape), tuple(t.stride()), t.dtype, str(t.device))

    def make(self) -> torch.Tensor:
        """A random tensor with these strides (over the smallest storage that holds them)."""
        storage = 1 + sum((n - 1) * s for n, s in zip(self.shape, self.stride, strict=True) if n > 0)
        base = torch.randn(storage, device=self.device).to(self.dtype)
        return base.as_strided(self.shape, self.stride)


@dataclass(frozen=True)
class GemmCall:
    """One GEMM as the step made it: the op and its arguments (tensors as specs, the rest as they were)."""

    op: str
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...] = ()

    @property
    def flops(self) -> int:
        """2 m k n per product (per batch entry for bmm), as torch's flop counter counts them."""
        a, b = (self.args[1], self.args[2]) if self.op in ("addmm", "baddbmm") else (self.args[0], self.args[1])
        *batch, m, k = a.shape
        n = b.shape[-1]
        return 2 * math.prod(batch) * m * k * n

    def materialise(self) -> Callable[[], torch.Tensor]:
        """The call, on freshly made operands, ready to be made again and again."""
        op = next(o for o, name in GEMM_OPS.items() if name == self.op)
        args = tuple(a.make() if isinstance(a, TensorSpec) else a for a in self.args)
        kwargs = dict(self.kwargs)
        return lambda: op(*args, **kwargs)


class GemmRecorder(TorchDispatchMode):
    """Counts the GEMMs made under it (forward and backward), keyed by shapes, layouts and dtype."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[GemmCall] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        name = GEMM_OPS.get(func)
        if name is not None:
            spec = tuple(TensorSpec.of(a) if isinstance(a, torch.Tensor) else a for a in args)
            self.calls[GemmCall(name, spec, tuple(sorted(kwargs.items())))] += 1
        return func(*args, **kwargs)


def register_cpu_attention_formulas() -> None:
    """Teach torch's flop counter the fused CPU attention kernel (forward and backward); idempotent."""
    registry = flop_counter.flop_registry
    forward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    backward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if forward is not None and forward not in registry:

        @flop_counter.register_flop_formula(forward)
        def _forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    if backward is not None and backward not in registry:

        @flop_counter.register_flop_formula(backward)
        def _backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


@dataclass
class StepCount:
    """What one counted step did: all FLOPs, FLOPs per op, and its GEMMs."""

    flops: int
    flops_by_op: dict[str, int]
    gemms: Counter[GemmCall]

    @property
    def gemm_flops(self) -> int:
        return sum(call.flops * n for call, n in self.gemms.items())

    def summary(self) -> dict[str, Any]:
        return {
            "flops_per_step": self.flops,
            "gemm_flops_per_step": self.gemm_flops,
            "flops_by_op": self.flops_by_op,
            "gemm_calls_per_step": sum(self.gemms.values()),
            "gemm_shapes": len(self.gemms),
        }


def count_step(step: Callable[[], Any]) -> StepCount:
    """Run ``step`` once, counting its FLOPs and recording its GEMMs."""
    register_cpu_attention_formulas()
    counter = flop_counter.FlopCounterMode(display=False)
    recorder = GemmRecorder()
    with counter, recorder:
        step()
    by_op = {str(op).split(".")[1] if "." in str(op) else str(op): int(n) for op, n in _total_by_op(counter).items()}
    return StepCount(int(counter.get_total_flops()), by_op, recorder.calls)


def _total_by_op(counter: flop_counter.FlopCounterMode) -> dict[Any, int]:
    counts = counter.get_flop_counts()
    return dict(counts.get("Global", {}))


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (a no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _time_calls(calls: Counter[GemmCall], device: str) -> float:
    """Seconds to make every recorded GEMM as often as the step makes it, on freshly made operands."""
    total = 0.0
    for call, n in calls.items():
        gemm = call.materialise()
        gemm()  # warm-up (and first touch of the operands)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(n):
            gemm()
        synchronize(device)
        total += time.perf_counter() - start
    return total


@torch.no_grad()
def matmul_rate(calls: Counter[GemmCall], repeats: int = 3) -> dict[str, float]:
    """GFLOP/s of the step's own GEMMs: total GEMM FLOPs over the median time of ``repeats`` replays."""
    if not calls:
        return {"gflops": math.nan, "seconds_per_step": math.nan}
    device = next(a.device for call in calls for a in call.args if isinstance(a, TensorSpec))
    flops = sum(call.flops * n for call, n in calls.items())
    seconds = statistics.median(_time_calls(calls, device) for _ in range(max(1, repeats)))
    return {"gflops": flops / seconds / 1e9, "seconds_per_step": seconds}


@torch.no_grad()
def square_matmul_gflops(
    n: int = 2048, dtype: torch.dtype = torch.float32, device: str = "cpu", repeats: int = 5
) -> float:
    """GFLOP/s of an n x n by n x n product (median of ``repeats``): the usual reference rate."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b
    times = []
    for _ in range(max(1, repeats)):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9
