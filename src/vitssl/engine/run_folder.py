"""The run folder: resolved config, checkpoints, metrics, pictures and result files of one pretraining run.

Only the main process writes; every other process gets the same object with writing switched off, so the
trainer never asks "am I rank 0?" itself. The files' names are :mod:`vitssl.engine.run_files`; nothing else in
the engine spells them.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vitssl.checkpoints import load_checkpoint, older_checkpoints, save_checkpoint
from vitssl.config import PretrainConfig, save_config, to_dict
from vitssl.engine import run_files
from vitssl.engine.experiment_loggers import build_experiment_loggers
from vitssl.engine.logger import MetricsLogger
from vitssl.errors import VitsslError
from vitssl.log import logger
from vitssl.run_lock import RunLock
from vitssl.writing import RESUME_AFTER_FAILED_WRITE, guard_write, write_failure

# What a picture's encoding can raise: OSError (the write, a full disk), ValueError (PIL: an unknown mode or
# format), TypeError (PIL: an array type it cannot encode). A picture is never worth the run.
_PICTURE_FAILURES = (OSError, ValueError, TypeError)
# What drawing the curves can raise besides a failed write: VitsslError (nothing plottable), ValueError and
# RuntimeError (matplotlib: data or layout it cannot draw). The curves are a view of the metrics file.
_CURVES_FAILURES = (VitsslError, OSError, ValueError, RuntimeError)


class RunFolder:
    """Everything a run writes, in one folder.

    Args:
        path: The run folder.
        main: Whether this process writes (the main process of a distributed run).
    """

    def __init__(self, path: Path, main: bool = True, keep: int = 2, cfg: PretrainConfig | None = None) -> None:
        self.path = Path(path)
        self.cfg = cfg  # its train.loggers choose where metrics go besides metrics.jsonl
        self.main = main
        self.keep = keep
        self._logger: MetricsLogger | None = None
        self._picture_failed = False  # said once: a folder that refuses one picture refuses the next ones too

    @property
    def checkpoint_path(self) -> Path:
        return self.path / run_files.CHECKPOINT

    def prepare(self) -> None:
        """Create the folder (main process) and check that it can be written and that no live run holds it,
        before any work is done."""
        if not self.main:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.path, prefix=".vitssl_write_test."):
                pass  # a name of its own: two runs started together must not delete each other's probe
        except OSError as exc:
            raise VitsslError(
                f"cannot write the run folder {self.path} ({exc.strerror or type(exc).__name__}); "
                "choose another train.out_dir or fix its permissions"
            ) from None
        RunLock(self.path).acquire().release()  # refused now, in one line, when a live run trains here

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's :class:`~vitssl.run_lock.RunLock` (main process only) while a run trains in it."""
        if not self.main:
            yield
            return
        with RunLock(self.path):
            yield

    @property
    def logger(self) -> MetricsLogger:
        if self._logger is None:
            names = list(self.cfg.train.loggers) if self.cfg is not None else ["tensorboard"]
            tensorboard = self.path / run_files.TENSORBOARD if "tensorboard" in names else None
            metrics = self.path / run_files.METRICS
            experiment = []
            if self.main and self.cfg is not None:
                cfg = self.cfg
                experiment = build_experiment_loggers(
                    names, self.path, metrics, cfg.name, cfg.train.wandb_project, to_dict(cfg)
                )
            self._logger = MetricsLogger(metrics, tensorboard, enabled=self.main, experiment=experiment)
        return self._logger

    def save_config(self, cfg: PretrainConfig) -> None:
        if self.main:
            path = self.path / run_files.CONFIG
            with guard_write("the config", path, RESUME_AFTER_FAILED_WRITE):
                save_config(cfg, path)

    def has_checkpoint(self) -> bool:
        return (
            self.checkpoint_path.exists()
            or (self.path / run_files.CHECKPOINT_IN_FLIGHT).exists()
            or bool(older_checkpoints(self.path))
        )

    def read_checkpoint(self) -> dict[str, Any] | None:
        """The newest good checkpoint (a torn or corrupt newest one is reported and skipped), or None."""
        if not (self.path.is_dir() and self.has_checkpoint()):
            return None
        return load_checkpoint(self.path, live_ok=True)  # this run holds the folder's lock itself

    def save_checkpoint(self, state: dict[str, Any]) -> Path:
        """``last.pt`` (atomic, with a checksum), keeping the previous ``keep - 1`` checkpoints."""
        if self.main:
            save_checkpoint(state, self.path, self.keep)
        return self.checkpoint_path

    def write_picture(self, name: str, step: int, image: np.ndarray) -> Path | None:
        """``pictures/<name>_step<step>.png`` from an (H, W, 3) uint8 array. A failure never costs the run: the
        partial file is removed and the first failure is one warning line."""
        if not self.main:
            return None
        path = self.path / run_files.PICTURES / f"{name}_step{step:06d}.png"
        try:
            from PIL import Image

            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(image, dtype=np.uint8)).save(path)
        except _PICTURE_FAILURES as exc:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            if not self._picture_failed:
                self._picture_failed = True
                _warn(write_failure("the picture", path, exc, "training goes on; later failures are not reported"))
            return None
        return path

    def write_json(self, name: str, payload: dict[str, Any]) -> None:
        if self.main:
            with guard_write("the results", self.path / name, "the trained weights are in the last checkpoint"):
                (self.path / name).write_text(json.dumps(payload, indent=2))

    def finish(self) -> None:
        """Close the logs and draw the training curves (a missing plot never costs the trained weights)."""
        if self._logger is not None:
            self._logger.close()
        if not self.main:
            return
        from vitssl.report.plots import plot_training_curves

        curves = self.path / run_files.CURVES
        try:
            plot_training_curves(self.path / run_files.METRICS, curves)
        except _CURVES_FAILURES as exc:
            _warn(write_failure("the training curves", curves, exc, f"{run_files.METRICS} holds them"))


def _warn(failure: Exception) -> None:
    logger.warning(str(failure))
