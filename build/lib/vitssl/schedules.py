"""Per-iteration schedules and the small per-step state computed from them.

Everything that changes during training (lr, weight decay, teacher momentum, teacher temperature) is a pure
function of the optimiser step, so resuming is "load the checkpoint, recompute the state from the step".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor


def cosine_schedule(
    step: int, total_steps: int, base: float, final: float, warmup_steps: int = 0, warmup_start: float = 0.0
) -> float:
    """Linear warm-up from ``warmup_start`` to ``base`` over ``warmup_steps``, then cosine from ``base`` to
    ``final`` at ``total_steps`` (the value at the last step ``total_steps - 1`` is just above ``final``)."""
    if step < warmup_steps:
        return warmup_start + (base - warmup_start) * step / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    return final + 0.5 * (base - final) * (1.0 + math.cos(math.pi * progress))


def linear_warmup(step: int, warmup_steps: int, start: float, end: float) -> float:
    """Linear from ``start`` to ``end`` over ``warmup_steps``, then constant ``end``."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return end
    return start + (end - start) * step / warmup_steps


@dataclass
class StepState:
    """Where training stands at one optimiser step.

    Attributes:
        step: optimiser step (0-based).
        steps_per_epoch: optimiser steps per epoch.
        total_steps: length of the run in optimiser steps.
        lr: learning rate of this step.
        weight_decay: weight decay of this step (for parameters that get any).
        values: method-specific scheduled values (e.g. ``teacher_momentum``, ``teacher_temp``).
        log: whether this step's metrics will be written (methods compute costly diagnostics only then).
        applied: with ``train.nonfinite_check=device``, a boolean device tensor: False when the optimiser step was
            skipped on the device (non-finite loss); state updated after the step (teacher EMA, centres) must
            then keep its value. None when every step that reaches ``after_optimizer_step`` was applied.
    """

    step: int
    steps_per_epoch: int
    total_steps: int
    lr: float = 0.0
    weight_decay: float = 0.0
    values: dict[str, float] = field(default_factory=dict)
    log: bool = False
    applied: Tensor | None = None

    @property
    def epoch(self) -> int:
        return self.step // self.steps_per_epoch

    @property
    def epoch_float(self) -> float:
        return self.step / self.steps_per_epoch
