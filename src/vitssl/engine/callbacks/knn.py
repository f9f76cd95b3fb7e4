"""The online k-NN accuracy as a callback: at the network's initialisation, every ``train.knn_every`` steps, and
at the end of the run (also written to the run folder)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitssl.engine import run_files
from vitssl.engine.callbacks.base import Callback
from vitssl.eval.knn_eval import KNNMonitor

if TYPE_CHECKING:
    from vitssl.engine.trainer import Trainer


class KNNCallback(Callback):
    """Logs ``knn_top1`` / ``knn_top5`` of the method's evaluation backbone.

    Args:
        monitor: The k-NN evaluator (its memory and queries).
        every: ``train.knn_every`` (0: only at the end of the run).
        k: ``train.knn_k``, the neighbours whose accuracy is logged.
    """

    def __init__(self, monitor: KNNMonitor, every: int, k: int) -> None:
        self.monitor, self.every, self.k = monitor, every, k
        self.result: dict[int, dict[str, float]] | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        if trainer.step == 0 and self.every:
            self.evaluate(trainer)  # the curve starts at the network's initialisation

    def on_between_steps(self, trainer: Trainer) -> None:
        if self.every and trainer.step % self.every == 0:
            self.evaluate(trainer)

    def on_fit_end(self, trainer: Trainer) -> None:
        knn = self.evaluate(trainer)
        payload = {"step": trainer.step, "k": self.k, **{str(n): v for n, v in knn.items()}}
        trainer.run.write_json(run_files.KNN_ONLINE, payload)

    def evaluate(self, trainer: Trainer) -> dict[int, dict[str, float]]:
        """Evaluate now, log it at the current step and keep it as :attr:`result`."""
        knn = self.monitor.evaluate(trainer.method.eval_backbone())
        trainer.logger.log(trainer.step, {"knn_top1": knn[self.k]["top1"], "knn_top5": knn[self.k]["top5"]})
        trainer.method.train()
        self.result = knn
        return knn
