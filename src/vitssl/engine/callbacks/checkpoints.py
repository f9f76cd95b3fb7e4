"""Checkpoints as a callback: every ``train.checkpoint_every`` steps and whenever the loop stops."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitssl.engine.callbacks.base import Callback

if TYPE_CHECKING:
    from vitssl.engine.trainer import Trainer


class CheckpointCallback(Callback):
    """Saves the run (every process takes part; the main process writes).

    Args:
        every: ``train.checkpoint_every``.
    """

    def __init__(self, every: int) -> None:
        self.every = every

    def on_between_steps(self, trainer: Trainer) -> None:
        if trainer.step % self.every == 0:
            trainer.save_checkpoint()

    def on_stop(self, trainer: Trainer, signum: int | None) -> None:
        trainer.save_checkpoint()  # at the end, at stop_at_step, or before a signal's one-line exit
