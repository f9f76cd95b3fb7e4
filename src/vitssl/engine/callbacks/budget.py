"""The time budget as a callback: after each step it may shorten the run (``train.budget_minutes``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitssl import distributed as dist
from vitssl.engine.budget import TimeBudget
from vitssl.engine.callbacks.base import Callback, StepEnd
from vitssl.log import logger

if TYPE_CHECKING:
    from vitssl.engine.trainer import Trainer


class BudgetCallback(Callback):
    """Sets the run's length when the budget decides it (see :class:`~vitssl.engine.budget.TimeBudget`).

    Args:
        budget: The trainer's budget (its clock starts when the trainer has resumed).
    """

    def __init__(self, budget: TimeBudget) -> None:
        self.budget = budget

    def on_step_end(self, trainer: Trainer, step: StepEnd) -> None:
        length = trainer.length
        fitted = self.budget.after_step(trainer.step, length.total, trainer.device, length.planned)
        if fitted is None:
            return
        if fitted != length.total and dist.is_main():
            logger.info(
                f"train.budget_minutes={self.budget.minutes:g}: {fitted} steps fit "
                f"({fitted / length.steps_per_epoch:.2f} epochs) of {length.planned}; the schedules end there"
            )
        length.fit_to(fitted)
