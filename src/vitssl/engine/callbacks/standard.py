"""The callbacks every training run has, in the order they are called."""

from __future__ import annotations

from vitssl.config import PretrainConfig
from vitssl.engine.budget import TimeBudget
from vitssl.engine.callbacks.base import Callback
from vitssl.engine.callbacks.budget import BudgetCallback
from vitssl.engine.callbacks.checkpoints import CheckpointCallback
from vitssl.engine.callbacks.knn import KNNCallback
from vitssl.engine.callbacks.pictures import PictureCallback
from vitssl.engine.callbacks.step_log import StepLogCallback
from vitssl.eval.knn_eval import KNNMonitor


def standard_callbacks(cfg: PretrainConfig, budget: TimeBudget, knn: KNNMonitor | None) -> list[Callback]:
    """Budget, progress and metrics, k-NN (with a monitor), pictures, checkpoints.

    The order matters: the budget sets the run's length before the bar and the log line read it; the k-NN and
    pictures of a step come before its checkpoint, so a resumed run does not evaluate that step again.
    """
    t = cfg.train
    callbacks: list[Callback] = [BudgetCallback(budget), StepLogCallback()]
    if knn is not None:
        callbacks.append(KNNCallback(knn, t.knn_every, t.knn_k))
    return [*callbacks, PictureCallback(t.picture_every), CheckpointCallback(t.checkpoint_every)]
