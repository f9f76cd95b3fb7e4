"""The hooks a training run calls around its optimiser steps.

A fit calls, in this order: ``on_fit_start`` once; per optimiser step ``on_step_end`` (the step's own records),
then the stop-signal check, then ``on_between_steps`` (work a stop signal must not wait for, skipped after the
run's last step); ``on_stop`` once when the loop ends (at the run's end, at ``stop_at_step`` or for a signal);
``on_fit_end`` only when the run reached its last step. Callbacks run in the trainer's list order at each hook.
A hook that raises ends the fit; faults the run survives are handled inside the callback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vitssl.schedules import StepState

if TYPE_CHECKING:  # the trainer calls its callbacks; a callback only reads it and calls it back
    from vitssl.engine.trainer import Trainer


@dataclass
class StepEnd:
    """One finished optimiser step, as ``on_step_end`` sees it.

    Attributes:
        state: The step's schedules (``state.step`` is its 0-based index; ``trainer.step`` already counts it).
        epoch: The epoch it belongs to.
        metrics: The method's metrics of its last micro-batch (device tensors or floats).
    """

    state: StepState
    epoch: int
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def logged(self) -> bool:
        """Whether this step writes a metrics line."""
        return self.state.log


class Callback:
    """No-op hooks; a callback overrides the ones it needs."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first step of this fit (after a resume: the step it resumed at)."""

    def on_step_end(self, trainer: Trainer, step: StepEnd) -> None:
        """After every optimiser step, before the stop-signal check: what a stopped run must still record."""

    def on_between_steps(self, trainer: Trainer) -> None:
        """After the stop-signal check, when steps remain: periodic work (``trainer.step`` steps are done)."""

    def on_stop(self, trainer: Trainer, signum: int | None) -> None:
        """The loop ended: at the end of the run or at ``stop_at_step`` (``signum`` None), or for a signal."""

    def on_fit_end(self, trainer: Trainer) -> None:
        """The run reached its last step (not called when it stopped early)."""
