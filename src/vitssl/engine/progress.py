"""The progress bar of a training run, with a smoothed images/s (main process only)."""

from __future__ import annotations

import time

from tqdm.auto import tqdm


class Progress:
    """A tqdm bar over optimiser steps that also measures images/s (exponentially smoothed, for display and logs).

    Args:
        total: Steps of the whole run.
        done: Steps already done (a resumed run).
        images_per_step: Images of one optimiser step over all processes.
        enabled: Show the bar (``train.progress`` on the main process).
        desc: The bar's label.
    """

    def __init__(self, total: int, done: int, images_per_step: int, enabled: bool, desc: str) -> None:
        self.images_per_step = images_per_step
        self.speed = 0.0
        self._last = time.perf_counter()
        self._bar = tqdm(total=total, initial=done, disable=not enabled, desc=desc, dynamic_ncols=True, unit="step")

    def step(self, loss: float, epoch: int) -> float:
        """One more step done; returns the smoothed images/s."""
        now = time.perf_counter()
        instant = self.images_per_step / max(now - self._last, 1e-9)
        self.speed = 0.9 * self.speed + 0.1 * instant if self.speed else instant
        self._last = now
        self._bar.update(1)
        self._bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{self.speed:.0f}", epoch=epoch)
        return self.speed

    @property
    def total(self) -> int:
        """The steps the bar ends at."""
        return int(self._bar.total)

    def set_total(self, total: int) -> None:
        """The run's length changed (a time budget): the bar ends at the new total."""
        self._bar.total = total
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()
