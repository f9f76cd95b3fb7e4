"""Metrics to ``metrics.jsonl`` (one JSON object per line, append-only) and TensorBoard."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from torch import Tensor


def to_float(value: Any) -> float:
    return float(value.detach().float().item()) if isinstance(value, Tensor) else float(value)


class MetricsLogger:
    """Writes scalar metrics of the main process. Nothing is written when ``enabled`` is false (other ranks)."""

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.run_dir = run_dir
        self.path = run_dir / "metrics.jsonl"
        self._tensorboard = enabled and tensorboard
        self._tb: Any = None
        self._purge_step: int | None = None

    def _writer(self) -> Any:
        """The TensorBoard writer, opened on first use (after a resume has set the step to purge from)."""
        if self._tb is None and self._tensorboard:
            self._tensorboard = False  # one attempt: a broken install or folder must not stop training
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"), purge_step=self._purge_step)
            except Exception as exc:
                import warnings

                warnings.warn(f"TensorBoard logging is off ({exc}); metrics.jsonl is still written", stacklevel=2)
        return self._tb

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
        self.path.write_text("".join(k + "\n" for k in kept))

    def log(self, step: int, metrics: dict[str, Any]) -> dict[str, float]:
        record = {"step": step, **{k: to_float(v) for k, v in metrics.items()}}
        if self.enabled:
            with self.path.open("a") as handle:
                handle.write(
                    json.dumps(
                        {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in record.items()}
                    )
                    + "\n"
                )
            if self._writer() is not None:
                for key, value in record.items():
                    if key != "step" and math.isfinite(value):
                        self._tb.add_scalar(key, value, step)
        return record

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
