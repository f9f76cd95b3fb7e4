"""A wall-clock budget for a run (``train.budget_minutes``): the run, schedules included, ends in time.

A user with 15 minutes wants a finished cosine schedule at minute 15, not a run cut off at a high learning rate.
The trainer measures its own pace over a few steps early on and shortens the run to the steps that fit; the
schedules (learning rate, weight decay, teacher momentum and temperature) then span the shortened run. The first
steps are slower than the rest (loader workers starting, the lazy image cache decoding its first epoch: the
logged pace of a CIFAR-10 preset rose from about 380 images/s in its first epoch to 500 later, and its 15-minute
run ended after 12), so the pace is measured once more, over 20-35 % of the decided run, and the length decided
again there, at most up to the epochs asked for. The schedules move by the change, a few per cent of the learning
rate at that point.
"""

from __future__ import annotations

import math
import time

import torch

from vitssl import distributed as dist

# Steps before the pace is measured (loader workers starting, first allocations) and steps it is measured over.
SETTLE_STEPS = 3
PACE_STEPS = 10
# The second measurement: from this fraction of the decided run's remaining steps to the next, then decided again.
REFINE_WINDOW = (0.20, 0.35)


class TimeBudget:
    """Decides how many optimiser steps fit in ``minutes`` of wall-clock time from ``start()``: early on, and once
    more after the first steps' slower pace has passed.

    Args:
        minutes: The budget, or None for no budget (the run is as long as ``optim.epochs``).
    """

    def __init__(self, minutes: float | None) -> None:
        self.minutes = minutes
        self.decided = minutes is None
        self.refined = minutes is None
        self._start = time.perf_counter()
        self._first_step = 0
        self._pace_from: tuple[int, float] | None = None
        self._refine_steps: tuple[int, int] | None = None  # (window start, decision step), the same on every process

    def start(self, step: int) -> None:
        """The clock starts (the run's set-up, e.g. decoding the image cache, counts against the budget)."""
        self._start = time.perf_counter()
        self._first_step = step

    def after_step(self, step: int, total_steps: int, device: torch.device, planned: int | None = None) -> int | None:
        """Call after every optimiser step; returns the new total number of steps when it is decided (twice: early
        on, and once more over 20-35 % of the run), else None. ``planned`` (default ``total_steps``) caps the
        second decision: the steps of the epochs asked for."""
        if self.minutes is None:
            return None
        if not self.decided:
            return self._decide(step, total_steps, device)
        if self.refined or self._refine_steps is None:
            return None
        window_start, decide_at = self._refine_steps
        if step == window_start:
            self._pace_from = (step, time.perf_counter())
        if step < decide_at or self._pace_from is None:
            return None
        self.refined = True
        fitting = self._fitting(step, device)
        refitted = max(step + 1, min(planned or total_steps, fitting))
        return refitted if refitted != total_steps else None

    def _decide(self, step: int, total_steps: int, device: torch.device) -> int | None:
        done = step - self._first_step
        if done == SETTLE_STEPS:
            self._pace_from = (step, time.perf_counter())
        if done < SETTLE_STEPS + PACE_STEPS or self._pace_from is None:
            return None
        self.decided = True
        fitted = max(step + 1, min(total_steps, self._fitting(step, device)))
        remaining = fitted - step
        start, end = (step + round(f * remaining) for f in REFINE_WINDOW)
        if step < start < end < fitted:
            self._refine_steps = (start, end)
        else:
            self.refined = True  # too short a run to measure again
        return fitted

    def _fitting(self, step: int, device: torch.device) -> int:
        """The step at which the budget runs out at the pace measured since ``_pace_from``."""
        assert self._pace_from is not None and self.minutes is not None
        now = time.perf_counter()
        pace = (now - self._pace_from[1]) / (step - self._pace_from[0])
        # Every process must stop at the same step: they agree on the slowest pace and the longest elapsed time.
        pace_and_elapsed = torch.tensor([pace, now - self._start], dtype=torch.float64, device=device)
        pace, elapsed = dist.all_reduce_max(pace_and_elapsed).tolist()
        fitting: int = step + math.floor(max(0.0, self.minutes * 60 - elapsed) / pace)
        return fitting
