"""The interface between a self-supervised method and the trainer.

A method wires backbone, heads, loss and (optionally) a teacher. It knows nothing about files, logging or
processes; the trainer knows nothing about any particular method.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor, nn

from vitssl.data.batches import ViewBatch
from vitssl.losses.terms import WeightedTerm
from vitssl.schedules import StepState

if TYPE_CHECKING:
    from vitssl.data.sources.folders import ViewTransform
    from vitssl.data.views.multicrop import CropSpec
    from vitssl.models.backbones import Backbone

__all__ = ["Method", "StepOutput", "StepState"]


@dataclass
class StepOutput:
    """The loss to back-propagate and detached metrics (tensors: converted only when logged)."""

    loss: Tensor
    metrics: dict[str, Tensor | float] = field(default_factory=dict)

    @classmethod
    def assemble(
        cls,
        loss: Tensor,
        terms: Iterable[WeightedTerm | None] = (),
        metrics: Mapping[str, Tensor | float] | None = None,
        log: bool = False,
    ) -> StepOutput:
        """The output of a step whose loss is ``loss`` plus each term's ``weight * value``, added in order (None:
        a term switched off). ``metrics`` is copied, never changed; on logged steps (``log``) the terms'
        unweighted values join it under their names."""
        out: dict[str, Tensor | float] = dict(metrics or {})
        for term in terms:
            if term is None:
                continue
            loss = loss + term.weighted
            if log:
                out[term.name] = term.value.detach()
        return cls(loss=loss, metrics=out)


class Method(nn.Module, metaclass=ABCMeta):
    """Base class of self-supervised methods: subclasses implement the abstract methods.

    The trainer reaches a method's networks only through :meth:`trained_modules` (what receives gradients and
    data parallelism wraps), :meth:`backbones` (what ``model.init_from`` loads into) and :meth:`eval_backbone`;
    nothing here assumes attribute names. :class:`vitssl.methods.distillation.DistillationMethod` implements the
    three for a student and its EMA teacher.
    """

    name: str = "method"
    #: Whether some trained parameters may get no gradient in a step (e.g. EsViT's region head before the region
    #: loss starts); data parallelism then looks for unused parameters each step.
    may_skip_parameters: bool = False

    @property
    @abstractmethod
    def views(self) -> list[CropSpec]:
        """The crops the loader must produce for each image, in order."""

    def train_transform(self) -> ViewTransform | None:
        """The per-sample transform of training images; None builds the crops of :attr:`views` (multi-crop)."""
        return None

    def train_collate(self) -> Callable[[Sequence[dict[str, Any]]], ViewBatch]:
        """The loader's collate function (picklable: workers receive it); default: crop-major view stacks."""
        from vitssl.data.loading.loader import collate_views

        return collate_views  # type: ignore[return-value]

    def pictures(self, batch: ViewBatch) -> dict[str, np.ndarray]:
        """Pictures of what the method does on a training ``batch``: name -> (H, W, 3) uint8 image. The trainer
        decides where and when they are written. Default: none."""
        return {}

    def schedule(self, step: int, steps_per_epoch: int, total_steps: int) -> dict[str, float]:
        """Method-specific scheduled values at ``step`` (e.g. teacher momentum)."""
        return {}

    @abstractmethod
    def training_step(self, batch: ViewBatch, state: StepState) -> StepOutput:
        """Turn a batch (``batch.views``: the crops, crop-major) into the loss and detached metrics."""

    def before_optimizer_step(self, state: StepState) -> None:
        """Called after backward and before clipping (e.g. drop the last layer's gradients)."""

    def after_optimizer_step(self, state: StepState) -> None:
        """Called once per optimiser step after the update (e.g. teacher EMA, centre update)."""

    def discard_pending(self) -> None:
        """Forget statistics gathered since the last optimiser step (the step was skipped)."""

    @abstractmethod
    def param_groups(self) -> list[dict[str, Any]]:
        """Optimiser parameter groups; a group with ``apply_wd=False`` gets no weight decay."""

    @abstractmethod
    def eval_backbone(self) -> Backbone:
        """The network to evaluate (the teacher where there is one)."""

    @abstractmethod
    def trained_modules(self) -> dict[str, nn.Module]:
        """The modules that receive gradients, each called once per training step through :meth:`run`, by name;
        the trainer may wrap them (DistributedDataParallel). Teachers and other EMA copies are never among them,
        and every parameter that :meth:`param_groups` hands to the optimiser belongs to one of them."""

    @abstractmethod
    def backbones(self) -> list[nn.Module]:
        """Every copy of the backbone (student, teacher): what ``model.init_from`` loads weights into."""

    def wrap_trained_modules(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Route the forward of every trained module through ``wrap(module)`` (e.g. DDP); the wrappers are not
        registered as submodules, so state dicts and checkpoints keep the plain names."""
        self.__dict__["_wrapped"] = {name: wrap(module) for name, module in self.trained_modules().items()}

    def run(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the trained module ``name`` (through its wrapper when the trainer set one)."""
        wrapped = self.__dict__.get("_wrapped", {})
        module = wrapped.get(name) or self.trained_modules()[name]
        return module(*args, **kwargs)
