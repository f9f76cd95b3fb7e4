"""A wall-clock budget for a run (``train.budget_minutes``): the run, schedules included, ends in time.

A user with 15 minutes wants a finished cosine schedule at minute 15, not a run cut off at a high learning rate.
The trainer measures its own pace over a few steps early on and shortens the run to the steps that fit; the
schedules (learning rate, weight decay, teacher momentum and temperature) then span the shortened run.
"""

from __future__ import annotations

import math
import time

import torch

from vitssl import distributed as dist

# Steps before the pace is measured (loader workers starting, first allocations) and steps it is measured over.
SETTLE_STEPS = 3
PACE_STEPS = 10


class TimeBudget:
    """Decides, once, how many optimiser steps fit in ``minutes`` of wall-clock time from ``start()``.

    Args:
        minutes: The budget, or None for no budget (the run is as long as ``optim.epochs``).
    """

    def __init__(self, minutes: float | None) -> None:
        self.minutes = minutes
        self.decided = minutes is None
        self._start = time.perf_counter()
        self._first_step = 0
        self._pace_from: tuple[int, float] | None = None

    def start(self, step: int) -> None:
        """The clock starts (the run's set-up, e.g. decoding the image cache, counts against the budget)."""
        self._start = time.perf_counter()
        self._first_step = step

    def after_step(self, step: int, total_steps: int, device: torch.device) -> int | None:
        """Call after every optimiser step; returns the new total number of steps once, when it is decided."""
        if self.decided or self.minutes is None:
            return None
        done = step - self._first_step
        if done == SETTLE_STEPS:
            self._pace_from = (step, time.perf_counter())
        if done < SETTLE_STEPS + PACE_STEPS or self._pace_from is None:
            return None
        now = time.perf_counter()
        pace = (now - self._pace_from[1]) / (step - self._pace_from[0])
        # Every process must stop at the same step: they agree on the slowest pace and the longest elapsed time.
        pace_and_elapsed = torch.tensor([pace, now - self._start], dtype=torch.float64, device=device)
        pace, elapsed = dist.all_reduce_max(pace_and_elapsed).tolist()
        self.decided = True
        fitting = step + math.floor(max(0.0, self.minutes * 60 - elapsed) / pace)
        return max(step + 1, min(total_steps, fitting))
