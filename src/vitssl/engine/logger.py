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
        self.path = run_dir / "metrics.jsonl"
        self._tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
            except ImportError:  # tensorboard is a dependency, but a broken install should not stop training
                self._tb = None

    def truncate_after(self, step: int) -> None:
        """Drop records newer than ``step`` (written after the checkpoint we resume from)."""
        if not self.enabled or not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a kill
            if record.get("step", -1) <= step:
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
            if self._tb is not None:
                for key, value in record.items():
                    if key != "step" and math.isfinite(value):
                        self._tb.add_scalar(key, value, step)
        return record

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
