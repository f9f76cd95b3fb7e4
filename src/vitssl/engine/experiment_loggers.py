"""Experiment loggers besides ``metrics.jsonl``: a CSV file, Weights & Biases and MLflow (``train.loggers``).

Each receives every record :class:`~vitssl.engine.logger.MetricsLogger` writes. W&B and MLflow are optional
extras, imported only when chosen; their run id is kept in the run folder, so a run resumed after a pre-emption
continues the same W&B / MLflow run and shows one curve. W&B keeps its local files inside the run folder
(``RUN/wandb``); MLflow uses ``MLFLOW_TRACKING_URI`` when set, else a file store in ``RUN/mlruns``.
"""

from __future__ import annotations

import csv
import json
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from vitssl.engine import run_files
from vitssl.extras import require
from vitssl.writing import RESUME_AFTER_FAILED_WRITE, guard_write


class ExperimentLogger(Protocol):
    """Receives the scalar records of the main process."""

    def log(self, step: int, record: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class CSVLogger:
    """``RUN/metrics.csv`` in long form (``step,metric,value``): one row per scalar, so records with different
    keys (a step's loss, a k-NN result) share one file that spreadsheets and pandas read directly. After a resume
    it is rewritten from ``metrics.jsonl``, which has already dropped what the run will redo."""

    HEADER = ("step", "metric", "value")

    def __init__(self, run_dir: Path, metrics: Path) -> None:
        self.path = run_dir / run_files.METRICS_CSV
        self.metrics = metrics

    def rebuild(self) -> None:
        """The CSV of what ``metrics.jsonl`` holds now."""
        records = []
        if self.metrics.exists():
            for line in self.metrics.read_text().splitlines():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line torn by a kill
        with (
            guard_write("the CSV metrics", self.path, RESUME_AFTER_FAILED_WRITE),
            self.path.open("w", newline="") as handle,
        ):
            writer = csv.writer(handle)
            writer.writerow(self.HEADER)
            for record in records:
                writer.writerows(_rows(int(record.get("step", -1)), record))

    def log(self, step: int, record: dict[str, float]) -> None:
        if not self.path.exists():
            self.rebuild()
            return  # the rebuild read this record from metrics.jsonl, written first
        with (
            guard_write("the CSV metrics", self.path, RESUME_AFTER_FAILED_WRITE),
            self.path.open("a", newline="") as handle,
        ):
            csv.writer(handle).writerows(_rows(step, record))

    def close(self) -> None:
        pass


def _rows(step: int, record: dict[str, Any]) -> Iterable[tuple[int, str, Any]]:
    return ((step, key, value) for key, value in record.items() if key != "step")


def _stored_id(path: Path) -> str | None:
    return path.read_text().strip() or None if path.exists() else None


class WandbLogger:
    """A Weights & Biases run whose id lives in ``RUN/wandb_run_id``: the first start creates the run, a resumed
    run (same folder) continues it (``resume="allow"``)."""

    def __init__(self, run_dir: Path, name: str, project: str, config: dict[str, Any]) -> None:
        wandb = require("wandb", "wandb", "train.loggers=[...,wandb]")
        id_file = run_dir / run_files.WANDB_ID
        run_id = _stored_id(id_file) or uuid.uuid4().hex[:8]  # W&B's own id form: 8 lowercase letters or digits
        with guard_write("the W&B run id", id_file, RESUME_AFTER_FAILED_WRITE):
            id_file.write_text(run_id + "\n")
        self.run = wandb.init(
            project=project, name=name, id=run_id, resume="allow", dir=str(run_dir), config=config, reinit=True
        )

    def log(self, step: int, record: dict[str, float]) -> None:
        self.run.log({k: v for k, v in record.items() if k != "step"}, step=step)

    def close(self) -> None:
        self.run.finish()


class MLflowLogger:
    """An MLflow run whose id lives in ``RUN/mlflow_run_id``: the first start creates it in the experiment named
    after the project, a resumed run continues it."""

    def __init__(self, run_dir: Path, name: str, experiment: str, config: dict[str, Any]) -> None:
        self.mlflow = require("mlflow", "mlflow", "train.loggers=[...,mlflow]")
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            # A file store next to the run's other records; MLflow asks for an explicit opt-in to file stores.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            self.mlflow.set_tracking_uri((run_dir / run_files.MLRUNS).resolve().as_uri())
        id_file = run_dir / run_files.MLFLOW_ID
        run_id = _stored_id(id_file)
        if run_id is None:
            self.mlflow.set_experiment(experiment)
            run = self.mlflow.start_run(run_name=name)
            with guard_write("the MLflow run id", id_file, RESUME_AFTER_FAILED_WRITE):
                id_file.write_text(run.info.run_id + "\n")
            self.mlflow.log_params(_flat(config))
        else:
            self.mlflow.start_run(run_id=run_id)

    def log(self, step: int, record: dict[str, float]) -> None:
        self.mlflow.log_metrics({k: v for k, v in record.items() if k != "step"}, step=step)

    def close(self) -> None:
        self.mlflow.end_run()


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config as ``section.key`` parameters (MLflow's parameters are flat strings)."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)[:500]  # MLflow caps a parameter's value
    return flat


def build_experiment_loggers(
    names: Iterable[str], run_dir: Path, metrics: Path, run_name: str, project: str, config: dict[str, Any]
) -> list[ExperimentLogger]:
    """The loggers ``train.loggers`` names, TensorBoard excepted (the metrics logger owns it)."""
    built: list[ExperimentLogger] = []
    for name in names:
        if name == "csv":
            built.append(CSVLogger(run_dir, metrics))
        elif name == "wandb":
            built.append(WandbLogger(run_dir, run_name, project, config))
        elif name == "mlflow":
            built.append(MLflowLogger(run_dir, run_name, project, config))
    return built
