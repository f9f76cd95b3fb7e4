"""The training loop. It knows nothing about any method: a method turns a batch into a loss, the trainer turns
the loss into an update. The run folder, the precision and the data are collaborators handed to it; what happens
around the steps (time budget, progress and metrics, k-NN, pictures, checkpoints) is its callbacks'."""

from __future__ import annotations

import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vitssl import distributed as dist
from vitssl.config import PretrainConfig
from vitssl.data.bad_inputs import BadInputs
from vitssl.data.batches import ViewBatch
from vitssl.data.pretrain import PretrainData
from vitssl.engine.budget import TimeBudget
from vitssl.engine.callbacks import Callback, KNNCallback, StepEnd, standard_callbacks
from vitssl.engine.data_parallel import DataParallel
from vitssl.engine.logger import MetricsLogger, to_float
from vitssl.engine.nonfinite import build_guard
from vitssl.engine.precision import Precision
from vitssl.engine.preemption import StopSignals
from vitssl.engine.run_folder import RunFolder
from vitssl.engine.run_length import RunLength
from vitssl.engine.run_state import capture, restore
from vitssl.errors import Interrupted, VitsslError
from vitssl.eval.knn_eval import KNNMonitor
from vitssl.methods.base import Method
from vitssl.optim import build_optimizer, clip_gradients_per_tensor_
from vitssl.schedules import StepState, cosine_schedule


@dataclass
class FitResult:
    run_dir: Path
    steps: int
    final_loss: float
    knn: dict[int, dict[str, float]] | None = None
    skipped_steps: int = 0
    already_finished: bool = False  # the run folder held a finished run: nothing was trained


class Trainer:
    """Pretrains ``method`` on ``data`` following ``cfg`` and keeps the run folder resumable.

    Args:
        method: The method, already on ``device``.
        data: The training images with the method's views, split for this process.
        cfg: The run's config (optimiser, schedules, logging, checkpoints).
        device: Where training runs.
        run_folder: Where everything is written (default: ``cfg.run_dir``, written by the main process).
        knn: The online k-NN evaluator, or None.
        callbacks: More callbacks, called after the built-in ones at each hook.
    """

    def __init__(
        self,
        method: Method,
        data: PretrainData,
        cfg: PretrainConfig,
        device: torch.device | None = None,
        run_folder: RunFolder | None = None,
        knn: KNNMonitor | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.cfg, self.method, self.data, self.knn = cfg, method, data, knn
        self.device = device or torch.device("cpu")
        self.run = run_folder or RunFolder(cfg.run_dir, dist.is_main(), cfg.train.keep_checkpoints, cfg)
        self.run_dir = self.run.path
        self.length = RunLength(len(data), cfg, dist.world_size())
        self.images_per_step = self.length.images_per_step
        self.peak_lr = cfg.optim.lr * self.images_per_step / 256  # linear scaling rule
        self.guard = build_guard(cfg.train.nonfinite_check, self.device)  # host or device: decided once
        self.optimizer = build_optimizer(
            self.method.param_groups(), self.peak_lr, cfg.optim.betas, self.device, fused=self.guard.fused or None
        )
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.precision = Precision(cfg.train.precision, self.device)
        self.data_parallel = DataParallel(method, self.params, self.device)
        self.budget = TimeBudget(cfg.train.budget_minutes)
        self.callbacks = [*standard_callbacks(cfg, self.budget, knn), *callbacks]
        self.step, self.last_loss, self.skipped_images, self.resumed = 0, float("nan"), 0, False
        self.bad_inputs = BadInputs()  # unreadable images and torn shards met by this process's batches
        self.last_batch: ViewBatch | None = None  # the latest micro-batch, for the method's pictures

    @property
    def logger(self) -> MetricsLogger:
        return self.run.logger

    @property
    def steps_per_epoch(self) -> int:
        return self.length.steps_per_epoch

    @property
    def total_steps(self) -> int:
        return self.length.total

    @property
    def skipped_steps(self) -> int:
        return self.guard.skipped_steps

    # -- schedules ----------------------------------------------------------------------------------------
    def state_at(self, step: int, log: bool = False) -> StepState:
        o, spe, total = self.cfg.optim, self.steps_per_epoch, self.total_steps
        state = StepState(step=step, steps_per_epoch=spe, total_steps=total, log=log)
        state.lr = cosine_schedule(step, total, self.peak_lr, o.min_lr, self.length.warmup)
        state.weight_decay = cosine_schedule(step, total, o.weight_decay, o.weight_decay_end)
        state.values = self.method.schedule(step, spe, total)
        return state

    def apply_state(self, state: StepState) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = state.lr
            if group.get("apply_wd", True):
                group["weight_decay"] = state.weight_decay

    # -- checkpoints --------------------------------------------------------------------------------------
    def checkpoint_dict(self) -> dict[str, Any]:
        return capture(self)

    def save_checkpoint(self) -> Path:
        """Every process reaches the same step, then the main process writes; the others wait until it has."""
        state = self.checkpoint_dict()  # a collective (the RNG states of all processes): every process calls it
        dist.barrier()
        path = self.run.save_checkpoint(state)
        dist.barrier()
        return path

    def _resume(self) -> bool:
        ckpt = self.run.read_checkpoint()
        if ckpt is None:
            self.logger.truncate_after(0)  # a run killed before its first checkpoint starts its history again
            return False
        restore(self, ckpt, self.run.checkpoint_path)
        self.logger.truncate_after(self.step)
        return True

    # -- one optimiser step -------------------------------------------------------------------------------
    def optimizer_step(self, batches: Iterator[ViewBatch], state: StepState) -> tuple[torch.Tensor, dict[str, Any]]:
        """One update from ``optim.accumulate`` micro-batches; returns the mean loss (a device tensor, mean over
        processes) and the last micro-batch's metrics. A non-finite loss skips the update (see
        :mod:`vitssl.engine.nonfinite`)."""
        self.optimizer.zero_grad(set_to_none=True)
        accumulate = self.cfg.optim.accumulate
        total = torch.zeros((), device=self.device)
        metrics: dict[str, Any] = {}
        for i in range(accumulate):
            batch = next(batches).to(self.device, non_blocking=self.device.type == "cuda")
            self.last_batch = batch
            self.skipped_images += int(batch.skipped)
            self.bad_inputs.add(batch.bad_paths)
            with self.data_parallel.sync(i == accumulate - 1):
                with self.precision.autocast():
                    out = self.method.training_step(batch, state)
                self.precision.backward(out.loss / accumulate)
            total += out.loss.detach().float()
            metrics = out.metrics
        # The mean over processes: what is logged, and what every process decides on (a non-finite loss on one
        # process makes every process skip the step, so no process is left waiting in a collective).
        loss = dist.all_reduce_mean(total / accumulate)
        if not self.guard.admit(loss, state):  # dropped before it reaches the weights
            self.optimizer.zero_grad(set_to_none=True)
            self.method.discard_pending()
            return loss, metrics
        self.method.before_optimizer_step(state)
        self.precision.unscale_(self.optimizer, None if state.applied is None else ~state.applied)
        if self.cfg.optim.clip_grad > 0:
            clip_gradients_per_tensor_(self.params, self.cfg.optim.clip_grad)
        self.precision.step(self.optimizer)
        self.method.after_optimizer_step(state)
        return loss, metrics

    def _stop_if_too_many_nonfinite(self, state: StepState) -> None:
        """Too many non-finite losses in a row stop the run cleanly, its weights untouched since the last good step."""
        if self.guard.refresh(state.log) and self.guard.in_a_row >= self.cfg.train.max_nonfinite:
            path = self.save_checkpoint()
            raise VitsslError(
                f"the loss was not finite for {self.guard.in_a_row} steps in a row (step {state.step}); the "
                f"weights were left untouched and saved to {path}; lower optim.lr, raise optim.warmup_epochs or "
                "use train.precision=fp32, then re-run to resume"
            )

    # -- the loop -----------------------------------------------------------------------------------------
    def batches_from(self, epoch: int, start_step: int) -> Iterator[ViewBatch]:
        """This process's micro-batches of ``epoch``, starting at optimiser step ``start_step`` of the epoch."""
        return self.data.batches(epoch, start_step * self.images_per_step // dist.world_size())

    def fit(self, stop_at_step: int | None = None) -> FitResult:
        """Train to ``optim.epochs``, resuming from the run folder when it has a checkpoint.

        Args:
            stop_at_step: stop early (with a checkpoint) after this optimiser step, as if the run had been
                interrupted there; the schedules still span the whole run, so re-running continues exactly.
        """
        self.run.prepare()
        with self.run.locked():  # one run per folder, from the read of its checkpoint to the last write
            return self._fit(stop_at_step)

    def _fit(self, stop_at_step: int | None) -> FitResult:
        self.resumed = self._resume()
        self.budget.start(self.step)
        if self.resumed and self.step >= self.total_steps:
            return FitResult(self.run_dir, self.step, self.last_loss, None, self.skipped_steps, already_finished=True)
        self.run.save_config(self.cfg)
        self.method.train()
        with StopSignals() as signals:
            signum = self._loop(stop_at_step, signals)
            if signum is not None:
                self._stop_on_signal(signum)
        self._report_bad_inputs()
        if self.step < self.total_steps:
            return FitResult(self.run_dir, self.step, self.last_loss, None, self.skipped_steps)
        self._each("on_fit_end")
        self.run.finish()  # closes the logs and draws the curves: after every callback has logged
        knn = next((c.result for c in self.callbacks if isinstance(c, KNNCallback)), None)
        return FitResult(self.run_dir, self.step, self.last_loss, knn, self.skipped_steps)

    def _loop(self, stop_at_step: int | None, signals: StopSignals) -> int | None:
        """Optimiser steps until the end (or ``stop_at_step``, or a stop signal, whose number it returns)."""
        self._each("on_fit_start")
        batches: Iterator[ViewBatch] = iter(())
        epoch, loss, signum = -1, None, None
        while self.step < min(self.total_steps, stop_at_step if stop_at_step is not None else self.total_steps):
            if self.step // self.steps_per_epoch != epoch:
                epoch = self.step // self.steps_per_epoch
                batches = self.batches_from(epoch, self.step - epoch * self.steps_per_epoch)
            state = self.state_at(self.step, log=self._logs(self.step))
            self.apply_state(state)
            loss, metrics = self.optimizer_step(batches, state)
            self._stop_if_too_many_nonfinite(state)
            value = self.guard.read_loss(loss, state.log)  # "device" reads the loss only on logged steps
            self.last_loss = self.last_loss if value is None else value
            self.step += 1
            self._each("on_step_end", StepEnd(state, epoch, metrics))
            signum = signals.requested(self.device, lagged=self.guard.lagged)
            if signum is not None:
                break
            if self.step < self.total_steps:  # the last step's work is on_fit_end's
                self._each("on_between_steps")
        signals.drain()
        if signum is None and loss is not None:
            self.last_loss = loss.item()  # the loss of the step the run stopped at, logged or not
        self._each("on_stop", signum)
        return signum

    def _logs(self, step: int) -> bool:
        return step % self.cfg.train.log_every == 0 or step == self.total_steps - 1

    def _each(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def _report_bad_inputs(self) -> None:
        """One line for the whole run (every process's unreadable inputs) when any were skipped; a collective."""
        gathered = dist.all_gather_object(self.bad_inputs.entries())
        if dist.is_main():
            tally = BadInputs()
            for entries in gathered:
                tally.add(entries)  # type: ignore[arg-type]  # lists of str, from every process
            tally.report(training=True)

    def _stop_on_signal(self, signum: int) -> None:
        self._report_bad_inputs()
        raise Interrupted(
            f"{signal.Signals(signum).name} received: stopped after step {self.step} of {self.total_steps} and "
            f"saved {self.run.checkpoint_path}; re-run the same command to resume exactly where it stopped",
            signum,
            report=dist.is_main(),  # one line per run, not per process
        )


__all__ = ["Trainer", "FitResult", "to_float"]
