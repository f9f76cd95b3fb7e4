"""The names of the files a training run writes into its run folder. :class:`~vitssl.engine.run_folder.RunFolder`
owns them: the engine reaches every file through it, and a command that reads a run folder takes the name from
here rather than spelling it again.

The checkpoint names (``last.pt`` and its rotation) belong to :mod:`vitssl.checkpoints`, a leaf that commands and
models below the engine read too; they are re-exported here so that this is the one list of a run's files.
"""

from __future__ import annotations

from vitssl.checkpoints import LAST, NEW

CHECKPOINT = LAST  # the newest checkpoint; older ones are rotated to last-<step>.pt beside it
CHECKPOINT_IN_FLIGHT = NEW  # complete, between its write and its rename to CHECKPOINT
CONFIG = "config.yaml"  # the resolved config of the run
METRICS = "metrics.jsonl"  # one JSON object per logged step: the run's record
CURVES = "curves.png"  # the training curves, drawn from METRICS when the run ends
TENSORBOARD = "tensorboard"  # TensorBoard events (a folder): a view of METRICS
PICTURES = "pictures"  # the method's pictures (a folder), <name>_step<step>.png
KNN_ONLINE = "knn_online.json"  # the online k-NN accuracy at the end of the run
KNN = "knn.json"  # written by `vitssl knn` into the run folder it evaluates
METRICS_CSV = "metrics.csv"  # train.loggers=[...,csv]: METRICS in long form
WANDB_ID = "wandb_run_id"  # train.loggers=[...,wandb]: the W&B run a resumed run continues (local files in wandb/)
MLFLOW_ID = "mlflow_run_id"  # train.loggers=[...,mlflow]: the MLflow run a resumed run continues
MLRUNS = "mlruns"  # the MLflow file store, when MLFLOW_TRACKING_URI is not set

__all__ = [
    "CHECKPOINT",
    "CHECKPOINT_IN_FLIGHT",
    "CONFIG",
    "CURVES",
    "KNN",
    "KNN_ONLINE",
    "METRICS",
    "METRICS_CSV",
    "MLFLOW_ID",
    "MLRUNS",
    "WANDB_ID",
    "PICTURES",
    "TENSORBOARD",
]
