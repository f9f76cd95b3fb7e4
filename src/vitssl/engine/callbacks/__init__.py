"""What a training run does around its optimiser steps, one callback each: the time budget, the progress bar
and metrics, the online k-NN, the method's pictures and the checkpoints (see :mod:`.base` for the hooks)."""

from vitssl.engine.callbacks.base import Callback, StepEnd
from vitssl.engine.callbacks.budget import BudgetCallback
from vitssl.engine.callbacks.checkpoints import CheckpointCallback
from vitssl.engine.callbacks.knn import KNNCallback
from vitssl.engine.callbacks.pictures import PictureCallback
from vitssl.engine.callbacks.standard import standard_callbacks
from vitssl.engine.callbacks.step_log import StepLogCallback

__all__ = [
    "BudgetCallback",
    "Callback",
    "CheckpointCallback",
    "KNNCallback",
    "PictureCallback",
    "StepEnd",
    "StepLogCallback",
    "standard_callbacks",
]
