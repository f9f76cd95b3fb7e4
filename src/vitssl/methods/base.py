"""The interface between a self-supervised method and the trainer.

A method wires backbone, heads, loss and (optionally) a teacher. It knows nothing about files, logging or
processes; the trainer knows nothing about any particular method.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from vitssl.schedules import StepState

if TYPE_CHECKING:
    from vitssl.config import PretrainConfig
    from vitssl.data.folders import ViewTransform
    from vitssl.data.multicrop import CropSpec
    from vitssl.models.backbones import Backbone


@dataclass
class StepOutput:
    """The loss to back-propagate and detached metrics (tensors: converted only when logged)."""

    loss: Tensor
    metrics: dict[str, Tensor | float] = field(default_factory=dict)


class Method(nn.Module, metaclass=ABCMeta):
    """Base class of self-supervised methods: subclasses implement the abstract methods."""

    name: str = "method"

    @property
    @abstractmethod
    def views(self) -> list[CropSpec]:
        """The crops the loader must produce for each image, in order."""

    def train_transform(self) -> ViewTransform | None:
        """The per-sample transform of training images; None builds the crops of :attr:`views` (multi-crop)."""
        return None

    def train_collate(self) -> Callable[[Sequence[dict[str, Any]]], dict[str, Any]]:
        """The loader's collate function (picklable: workers receive it); default: crop-major view stacks."""
        from vitssl.data.loader import collate_views

        return collate_views

    def visualise(self, batch: dict, out_dir: Path, step: int) -> Path | None:
        """Write a picture of what the method does on a training ``batch``; the file, or None (the default)."""
        return None

    def schedule(self, step: int, steps_per_epoch: int, total_steps: int) -> dict[str, float]:
        """Method-specific scheduled values at ``step`` (e.g. teacher momentum)."""
        return {}

    @abstractmethod
    def training_step(self, batch: dict, state: StepState) -> StepOutput:
        """Turn a batch (``batch["views"]``: the crops, crop-major) into the loss and detached metrics."""

    def before_optimizer_step(self, state: StepState) -> None:
        """Called after backward and before clipping (e.g. drop the last layer's gradients)."""

    def after_optimizer_step(self, state: StepState) -> None:
        """Called once per optimiser step after the update (e.g. teacher EMA, centre update)."""

    def discard_pending(self) -> None:
        """Forget statistics gathered since the last optimiser step (the step was skipped)."""

    @abstractmethod
    def param_groups(self) -> list[dict]:
        """Optimiser parameter groups; a group with ``apply_wd=False`` gets no weight decay."""

    @abstractmethod
    def eval_backbone(self) -> Backbone:
        """The network to evaluate (the teacher where there is one)."""


_REGISTRY: dict[str, Callable[[PretrainConfig], Method]] = {}


def register_method(name: str) -> Callable:
    def wrap(factory: Callable[[PretrainConfig], Method]) -> Callable[[PretrainConfig], Method]:
        _REGISTRY[name] = factory
        return factory

    return wrap


def available_methods() -> list[str]:
    return sorted(_REGISTRY)


def build_method(cfg: PretrainConfig) -> Method:
    from vitssl.errors import VitsslError

    if cfg.method not in _REGISTRY:
        raise VitsslError(f"unknown method '{cfg.method}'; choose one of {', '.join(available_methods())}")
    return _REGISTRY[cfg.method](cfg)
