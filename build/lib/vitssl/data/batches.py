"""Typed batches: what the loader hands to a method (training) or to a feature extractor (evaluation).

Crop-major order (docs/methods.md, notation): ``views[v]`` is the (B, 3, h, w) batch of crop v, so a method can
run its backbone once per crop resolution, as DINO does (Caron et al. 2021, arXiv 2104.14294).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor

B = TypeVar("B", bound="Batch")


def adjacent_runs(tensors: Sequence[Tensor]) -> list[tuple[int, int]]:
    """Maximal runs ``(start, end)`` of consecutive tensors that lie back to back in one buffer.

    Two neighbours join a run when both are contiguous, share their storage, have the same shape but for the
    first dimension, and the second starts where the first ends; such a run can be read as one tensor without a
    copy (:func:`joined`). Tensors stacked per crop resolution and then split (:func:`stack_by_resolution`) form
    one run per resolution.
    """
    runs: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(tensors) + 1):
        if i == len(tensors) or not _follows(tensors[i - 1], tensors[i]):
            runs.append((start, i))
            start = i
    return runs


def _follows(a: Tensor, b: Tensor) -> bool:
    return bool(
        a.is_contiguous()
        and b.is_contiguous()
        and a.dtype == b.dtype
        and a.device == b.device
        and a.shape[1:] == b.shape[1:]
        and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
        and b.storage_offset() == a.storage_offset() + a.numel()
    )


def joined(tensors: Sequence[Tensor]) -> Tensor:
    """``torch.cat(tensors)``, without the copy when they lie back to back in one buffer (:func:`adjacent_runs`)."""
    if len(tensors) == 1:
        return tensors[0]
    if adjacent_runs(tensors) == [(0, len(tensors))]:
        first = tensors[0]
        size = (sum(t.shape[0] for t in tensors), *first.shape[1:])
        return first.as_strided(size, first.stride(), first.storage_offset())
    return torch.cat(list(tensors))


def stack_by_resolution(per_crop: Sequence[Sequence[Tensor]]) -> list[Tensor]:
    """``[torch.stack(samples) for samples in per_crop]``, with each run of same-size crops stacked into one
    buffer, so that the crops of one resolution move to the device and into the backbone as one tensor."""
    out: list[Tensor] = []
    start = 0
    for i in range(1, len(per_crop) + 1):
        if i == len(per_crop) or per_crop[i][0].shape != per_crop[start][0].shape:
            group = torch.stack([t for crop in per_crop[start:i] for t in crop])
            out.extend(group.split(len(per_crop[start])))
            start = i
    return out


def _move(value: Any, fn) -> Any:
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, list) and value and all(isinstance(v, Tensor) for v in value):
        # A run of tensors sharing one buffer moves as one tensor (one transfer, and still one buffer after).
        moved: list[Tensor] = []
        for start, end in adjacent_runs(value):
            run = value[start:end]
            moved.extend([fn(run[0])] if len(run) == 1 else fn(joined(run)).split([t.shape[0] for t in run]))
        return moved
    return value


def bad_paths_of(samples: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    """The distinct ``"bad_paths"`` entries of a batch's samples, in order (what :attr:`Batch.bad_paths` holds).

    Many samples of a torn shard name the same shard; one entry per batch is enough for the main process's
    tally (:class:`vitssl.data.bad_inputs.BadInputs`).
    """
    return tuple(dict.fromkeys(text for sample in samples for text in sample.get("bad_paths", ())))


@dataclass
class Batch:
    """Fields every batch has: labels (-1 when unlabelled), dataset indices, the unreadable files skipped, and
    the entries (``"PATH (reason)"``) of the unreadable inputs this batch's samples passed over, which carry them
    from the loader workers to the main process (see :mod:`vitssl.data.bad_inputs`)."""

    label: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    index: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    skipped: int = 0
    bad_paths: tuple[str, ...] = ()

    def apply(self: B, fn) -> B:
        """A copy with ``fn`` applied to every tensor (and every tensor of a list of tensors)."""
        return dataclasses.replace(self, **{f.name: _move(getattr(self, f.name), fn) for f in dataclasses.fields(self)})

    def to(self: B, device: torch.device | str, non_blocking: bool = False) -> B:
        return self.apply(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self: B) -> B:
        """Called by ``DataLoader(pin_memory=True)`` for custom batch types."""
        return self.apply(lambda t: t.pin_memory())


@dataclass
class ViewBatch(Batch):
    """Training views of a batch of images: ``views[v]`` is (B, 3, h, w), globals first."""

    views: list[Tensor] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.views[0].shape[0]


@dataclass
class SiTBatch(ViewBatch):
    """SiT's views: corrupted ``views``, their clean rotated ``targets``, corruption ``masks`` (B, H, W) and
    rotation labels ``rotations`` (B,), one of each per view (Atito et al. 2021, arXiv 2104.03602)."""

    targets: list[Tensor] = field(default_factory=list)
    masks: list[Tensor] = field(default_factory=list)
    rotations: list[Tensor] = field(default_factory=list)


@dataclass
class EvalBatch(Batch):
    """One deterministic view per image: ``images`` (B, 3, H, W)."""

    images: Tensor = field(default_factory=lambda: torch.zeros(0))
