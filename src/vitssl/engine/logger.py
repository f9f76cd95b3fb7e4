"""Metrics to ``metrics.jsonl`` (one JSON object per line, append-only) and TensorBoard.

``metrics.jsonl`` is the run's record: when it cannot be written (a full disk, a file-size limit), the run stops
with one line (:class:`~vitssl.writing.WriteFailed`) and its last checkpoint stays intact. TensorBoard is a
convenience: when its writer fails, one line says so and TensorBoard logging stops, while training goes on.
"""

from __future__ import annotations

import importlib
import json
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from vitssl.engine.experiment_loggers import CSVLogger, ExperimentLogger
from vitssl.log import logger
from vitssl.writing import RESUME_AFTER_FAILED_WRITE, guard_write, write_failure


def to_float(value: Any) -> float:
    return float(value.detach().float().item()) if isinstance(value, Tensor) else float(value)


def _tensorboard_failures() -> tuple[type[BaseException], ...]:
    """What TensorBoard's writer raises when it cannot start or write: ImportError (not installed), OSError (its
    folder or a full disk), ValueError and RuntimeError (a writer closed under it), and its file layer's own
    ``OpError`` family (not OSError subclasses)."""
    failures: tuple[type[BaseException], ...] = (ImportError, OSError, ValueError, RuntimeError)
    try:  # imported by name: tensorboard ships no type information
        errors = importlib.import_module("tensorboard.compat.tensorflow_stub.errors")
    except ImportError:
        return failures
    return (*failures, errors.OpError)


class MetricsLogger:
    """Writes scalar metrics of the main process. Nothing is written when ``enabled`` is false (other ranks).

    Args:
        path: The metrics file (JSON lines).
        tensorboard: The TensorBoard folder, or None for no TensorBoard.
        enabled: Whether this process writes.
    """

    def __init__(
        self,
        path: Path,
        tensorboard: Path | None,
        enabled: bool = True,
        experiment: Sequence[ExperimentLogger] = (),
    ) -> None:
        self.enabled = enabled
        self.experiment = list(experiment) if enabled else []
        self.path = path
        self.tensorboard_dir = tensorboard
        self._tensorboard = enabled and tensorboard is not None
        self._tb: Any = None
        self._purge_step: int | None = None
        self._failures: tuple[type[BaseException], ...] = (ImportError, OSError)

    def _writer(self) -> Any:
        """The TensorBoard writer, opened on first use (after a resume has set the step to purge from)."""
        if self._tb is None and self._tensorboard:
            self._tensorboard = False  # one attempt: a broken install or folder must not stop training
            self._failures = _tensorboard_failures()
            try:
                from torch.utils.tensorboard import SummaryWriter

                _silence_tensorboard_thread()
                self._tb = SummaryWriter(log_dir=str(self.tensorboard_dir), purge_step=self._purge_step)
            except self._failures as exc:
                self._tensorboard_failed(exc)
        return self._tb

    def _tensorboard_failed(self, exc: BaseException) -> None:
        """One line, then no more TensorBoard: its events are a view of metrics.jsonl, which is still written."""
        self._tb, self._tensorboard = None, False
        failure = write_failure(
            "TensorBoard events in", self.tensorboard_dir or self.path.parent, exc, "TensorBoard logging is off"
        )
        logger.warning(f"{failure}; metrics.jsonl is still written")

    def truncate_after(self, step: int) -> None:
        """Keep the history of the first ``step`` optimiser steps only: what a run resumed at ``step`` will not
        write again. Step records (a loss) carry the index of the step they describe (0 .. step - 1 are kept);
        other records (k-NN) carry the number of steps done (up to ``step`` is kept). TensorBoard events after
        ``step`` are purged when the writer opens."""
        self._purge_step = step
        if not self.enabled or not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a kill
            at = record.get("step", -1)
            if at < step or (at == step and "loss" not in record):
                kept.append(line)
        with guard_write("the metrics", self.path, RESUME_AFTER_FAILED_WRITE):
            self.path.write_text("".join(k + "\n" for k in kept))
        for sink in self.experiment:
            if isinstance(sink, CSVLogger):
                sink.rebuild()

    def log(self, step: int, metrics: dict[str, Any]) -> dict[str, float]:
        record = {"step": step, **{k: to_float(v) for k, v in metrics.items()}}
        if self.enabled:
            line = json.dumps(
                {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in record.items()}
            )
            with guard_write("the metrics", self.path, RESUME_AFTER_FAILED_WRITE), self.path.open("a") as handle:
                handle.write(line + "\n")
            self._add_scalars(step, record)
            finite = {k: v for k, v in record.items() if math.isfinite(v)}
            for sink in self.experiment:
                sink.log(step, finite)
        return record

    def _add_scalars(self, step: int, record: dict[str, float]) -> None:
        if self._writer() is None:
            return
        try:
            for key, value in record.items():
                if key != "step" and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)
        except self._failures as exc:  # the writer's thread failed (e.g. a full disk): raised on the next call
            self._tensorboard_failed(exc)

    def close(self) -> None:
        for sink in self.experiment:
            sink.close()
        self.experiment = []
        if self._tb is not None:
            try:
                self._tb.close()
            except self._failures as exc:
                self._tensorboard_failed(exc)


def _silence_tensorboard_thread() -> None:
    """TensorBoard writes events in a thread; when a write fails there, the thread keeps the error for the next
    call from the main thread (reported as one line above) and also lets it escape, which would print a thread
    traceback. This hook drops that second report, for TensorBoard's writer thread only."""
    previous = threading.excepthook
    if getattr(previous, "vitssl_tensorboard", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if type(args.thread).__name__ != "_AsyncWriterThread":
            previous(args)

    hook.vitssl_tensorboard = True  # type: ignore[attr-defined]
    threading.excepthook = hook
