"""Typed batches: what the loader hands to a method (training) or to a feature extractor (evaluation).

Crop-major order (docs/methods.md, notation): ``views[v]`` is the (B, 3, h, w) batch of crop v, so a method can
run its backbone once per crop resolution, as DINO does (Caron et al. 2021, arXiv 2104.14294).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor

B = TypeVar("B", bound="Batch")


def _move(value: Any, fn) -> Any:
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, list) and value and all(isinstance(v, Tensor) for v in value):
        return [fn(v) for v in value]
    return value


@dataclass
class Batch:
    """Fields every batch has: labels (-1 when unlabelled), dataset indices and the unreadable files skipped."""

    label: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    index: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    skipped: int = 0

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
