"""The method's pictures as a callback: every ``train.picture_every`` steps and at the end of the run, written
into the run folder by the main process; a picture never costs the run."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from vitssl.engine.callbacks.base import Callback
from vitssl.errors import VitsslError

if TYPE_CHECKING:
    from vitssl.engine.trainer import Trainer

# What drawing a picture can raise: RuntimeError (torch: the method's forward pass, out of device memory
# included), ValueError and TypeError (numpy or PIL: arrays of an unexpected shape or type), OSError (a font or
# file PIL reads), VitsslError (a method refusing the batch). The write itself reports its own failures.
PICTURE_FAILURES = (RuntimeError, ValueError, TypeError, OSError, VitsslError)


class PictureCallback(Callback):
    """Writes ``method.pictures(last batch)`` as ``pictures/<name>_step<step>.png``.

    Args:
        every: ``train.picture_every`` (0: only at the end of the run).
    """

    def __init__(self, every: int) -> None:
        self.every = every

    def on_between_steps(self, trainer: Trainer) -> None:
        if self.every and trainer.step % self.every == 0:
            self.draw(trainer)

    def on_fit_end(self, trainer: Trainer) -> None:
        self.draw(trainer)

    @staticmethod
    def draw(trainer: Trainer) -> None:
        """The pictures of the latest micro-batch at the current step (main process only)."""
        if trainer.last_batch is None or not trainer.run.main:
            return
        try:
            for name, image in trainer.method.pictures(trainer.last_batch).items():
                trainer.run.write_picture(name, trainer.step, image)
        except PICTURE_FAILURES as exc:
            warnings.warn(f"could not draw the step-{trainer.step} pictures: {exc}", stacklevel=2)
        finally:
            trainer.method.train()
