"""The progress bar and the metrics line of each logged step, as a callback."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from vitssl import distributed as dist
from vitssl.engine.callbacks.base import Callback, StepEnd
from vitssl.engine.logger import to_float
from vitssl.engine.progress import Progress

if TYPE_CHECKING:
    from vitssl.engine.trainer import Trainer


class StepLogCallback(Callback):
    """Moves the progress bar every step (it also measures images/s) and writes the logged steps' metrics."""

    def __init__(self) -> None:
        self.bar: Progress | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        enabled = trainer.cfg.train.progress and dist.is_main()
        desc = "resumed" if trainer.resumed else "pretrain"
        self.bar = Progress(trainer.total_steps, trainer.step, trainer.images_per_step, enabled, desc)

    def on_step_end(self, trainer: Trainer, step: StepEnd) -> None:
        assert self.bar is not None, "on_fit_start creates the bar"
        if self.bar.total != trainer.total_steps:  # a time budget set the run's length
            self.bar.set_total(trainer.total_steps)
        speed = self.bar.step(trainer.last_loss, step.epoch)
        if step.logged:
            self._log(trainer, step, speed)

    def on_stop(self, trainer: Trainer, signum: int | None) -> None:
        if self.bar is not None:
            self.bar.close()

    @staticmethod
    def _log(trainer: Trainer, step: StepEnd, speed: float) -> None:
        metrics = step.metrics
        if metrics:  # means over processes, like the loss (one small all-reduce, only on logged steps)
            values = dist.all_reduce_mean(
                torch.tensor([to_float(v) for v in metrics.values()], dtype=torch.float64, device=trainer.device)
            )
            metrics = dict(zip(metrics, values.tolist(), strict=True))
        state = step.state
        trainer.logger.log(
            state.step,
            {
                "loss": trainer.last_loss,
                "lr": state.lr,
                "weight_decay": state.weight_decay,
                "images_per_s": speed,
                "epoch": state.epoch_float,
                "skipped_steps": trainer.skipped_steps,
                "skipped_images": trainer.skipped_images,
                "bad_shards": trainer.bad_inputs.bad_shards,
                **state.values,
                **metrics,
            },
        )
