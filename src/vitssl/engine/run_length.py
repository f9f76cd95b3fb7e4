"""How long a run is, in optimiser steps: from ``optim.epochs`` at first, from a time budget once one decides."""

from __future__ import annotations

from vitssl.config import PretrainConfig
from vitssl.errors import VitsslError


class RunLength:
    """The run's optimiser steps and its learning-rate warm-up; the one place the number of steps is computed.

    Args:
        images: Training images (all processes).
        cfg: The run's config (``data.batch_size``, ``optim.accumulate``, ``optim.epochs``, ``optim.warmup_epochs``).
        world_size: Processes sharing each optimiser step.

    Raises:
        VitsslError: When the data holds fewer images than one optimiser step needs.
    """

    def __init__(self, images: int, cfg: PretrainConfig, world_size: int) -> None:
        self.images_per_step = cfg.data.batch_size * cfg.optim.accumulate * world_size
        self.steps_per_epoch = images // self.images_per_step
        if self.steps_per_epoch == 0:
            raise VitsslError(
                f"the training set has {images} images, fewer than one optimiser step "
                f"needs ({self.images_per_step}); lower data.batch_size or optim.accumulate"
            )
        self.epochs, self.warmup_epochs = cfg.optim.epochs, cfg.optim.warmup_epochs
        self.total = self.planned
        self.warmup = round(self.warmup_epochs * self.steps_per_epoch)

    @property
    def planned(self) -> int:
        """The steps of ``optim.epochs``: the run's length without a budget, the most a budget allows."""
        return max(1, round(self.epochs * self.steps_per_epoch))

    def fit_to(self, total: int) -> None:
        """End the run after ``total`` steps (a time budget), its warm-up in proportion (other epoch-based
        schedules keep their epochs)."""
        self.warmup = round(self.warmup_epochs * self.steps_per_epoch * total / self.planned)
        self.total = total
