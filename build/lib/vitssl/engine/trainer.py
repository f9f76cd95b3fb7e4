"""The training loop. It knows nothing about any method: a method turns a batch into a loss, the trainer turns
the loss into an update. The run folder, the precision and the data are collaborators handed to it."""

from __future__ import annotations

import math
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vitssl import __version__
from vitssl import distributed as dist
from vitssl.checkpoints import rng_state
from vitssl.config import PretrainConfig, to_dict
from vitssl.data.bad_inputs import BadInputs
from vitssl.data.batches import ViewBatch
from vitssl.data.pretrain import PretrainData
from vitssl.engine.budget import TimeBudget
from vitssl.engine.data_parallel import DataParallel
from vitssl.engine.logger import MetricsLogger, to_float
from vitssl.engine.nonfinite import DeviceSkipCounter, decides_on_device
from vitssl.engine.precision import Precision
from vitssl.engine.preemption import StopSignals
from vitssl.engine.progress import Progress
from vitssl.engine.resume import check_resumable, check_same_global_batch, restore_rng
from vitssl.engine.run_folder import RunFolder
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
    """

    def __init__(
        self,
        method: Method,
        data: PretrainData,
        cfg: PretrainConfig,
        device: torch.device | None = None,
        run_folder: RunFolder | None = None,
        knn: KNNMonitor | None = None,
    ) -> None:
        self.cfg, self.method, self.data = cfg, method, data
        self.device = device or torch.device("cpu")
        self.run = run_folder or RunFolder(cfg.run_dir, main=dist.is_main(), keep=cfg.train.keep_checkpoints)
        self.run_dir = self.run.path
        self.knn = knn
        self.images_per_step = cfg.data.batch_size * cfg.optim.accumulate * dist.world_size()
        self.steps_per_epoch = len(data) // self.images_per_step
        if self.steps_per_epoch == 0:
            raise VitsslError(
                f"the training set has {len(data)} images, fewer than one optimiser step "
                f"needs ({self.images_per_step}); lower data.batch_size or optim.accumulate"
            )
        self.total_steps = max(1, round(cfg.optim.epochs * self.steps_per_epoch))
        self.warmup_steps = round(cfg.optim.warmup_epochs * self.steps_per_epoch)
        self.peak_lr = cfg.optim.lr * self.images_per_step / 256  # linear scaling rule
        # "device": skipped steps are decided without a host read (fused AdamW's found_inf), counted here
        self.device_skips = (
            DeviceSkipCounter(self.device) if decides_on_device(cfg.train.nonfinite_check, self.device) else None
        )
        fused = True if self.device_skips is not None else None
        self.optimizer = build_optimizer(
            self.method.param_groups(), self.peak_lr, cfg.optim.betas, self.device, fused=fused
        )
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.precision = Precision(cfg.train.precision, self.device)
        self.data_parallel = DataParallel(method, self.params, self.device)
        self.budget = TimeBudget(cfg.train.budget_minutes)
        self.step = 0
        self.last_loss = float("nan")
        self.skipped_steps = 0
        self.consecutive_nonfinite = 0
        self.skipped_images = 0
        self.bad_inputs = BadInputs()  # unreadable images and torn shards met by this process's batches
        self.last_batch: ViewBatch | None = None  # the latest micro-batch, for the method's pictures

    @property
    def logger(self) -> MetricsLogger:
        return self.run.logger

    # -- schedules ----------------------------------------------------------------------------------------
    def state_at(self, step: int, log: bool = False) -> StepState:
        o, spe = self.cfg.optim, self.steps_per_epoch
        state = StepState(step=step, steps_per_epoch=spe, total_steps=self.total_steps, log=log)
        state.lr = cosine_schedule(step, self.total_steps, self.peak_lr, o.min_lr, self.warmup_steps)
        state.weight_decay = cosine_schedule(step, self.total_steps, o.weight_decay, o.weight_decay_end)
        state.values = self.method.schedule(step, spe, self.total_steps)
        return state

    def apply_state(self, state: StepState) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = state.lr
            if group.get("apply_wd", True):
                group["weight_decay"] = state.weight_decay

    # -- checkpoints --------------------------------------------------------------------------------------
    def checkpoint_dict(self) -> dict[str, Any]:
        self._read_device_skips()
        return {
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.precision.state_dict(),
            "step": self.step,
            "total_steps": self.total_steps,
            "budget_decided": self.budget.minutes is not None and self.budget.decided,
            "last_loss": self.last_loss,
            "skipped_steps": self.skipped_steps,
            "rng": rng_state(),
            "rng_ranks": dist.all_gather_object(rng_state()),  # drop-path draws differ per process
            "world_size": dist.world_size(),
            "images_per_step": self.images_per_step,
            "config": to_dict(self.cfg),
            "version": __version__,
        }

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
        path = self.run.checkpoint_path
        check_same_global_batch(ckpt, self.images_per_step, self.cfg, path)
        # The same global batch split over another number of processes is the same run.
        check_resumable(ckpt["config"], to_dict(self.cfg), path, also_harmless={"data.batch_size"})
        try:
            self.method.load_state_dict(ckpt["method"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise VitsslError(
                f"checkpoint {path} does not match this model ({str(exc).splitlines()[0]}); use a new train.out_dir"
            ) from None
        self.precision.load_state_dict(ckpt.get("scaler"))
        self.step = int(ckpt["step"])
        self.last_loss = float(ckpt.get("last_loss", float("nan")))
        self.skipped_steps = int(ckpt.get("skipped_steps", 0))
        if self.budget.minutes is not None and ckpt.get("budget_decided"):
            self._fit_to_budget(int(ckpt["total_steps"]), quiet=True)  # decided before the interruption
            self.budget.decided = self.budget.refined = True  # the clock restarted: keep that length
        if dist.is_main() and self.step < self.total_steps:  # said without a progress bar too: logs show it
            print(f"vitssl: resuming {self.run_dir} at step {self.step} of {self.total_steps}", flush=True)
        restore_rng(ckpt, self.cfg.train.seed)
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
        if self.device_skips is not None:
            state.applied = torch.isfinite(loss)
            self.device_skips.add(state.applied)
        elif not math.isfinite(loss.item()):
            self._skip_nonfinite(state)
            return loss, metrics
        else:
            self.consecutive_nonfinite = 0
        self.method.before_optimizer_step(state)
        self.precision.unscale_(self.optimizer, None if state.applied is None else ~state.applied)
        if self.cfg.optim.clip_grad > 0:
            clip_gradients_per_tensor_(self.params, self.cfg.optim.clip_grad)
        self.precision.step(self.optimizer)
        self.method.after_optimizer_step(state)
        return loss, metrics

    def _skip_nonfinite(self, state: StepState) -> None:
        """The update is dropped before it reaches the weights; too many in a row stop the run cleanly."""
        self.optimizer.zero_grad(set_to_none=True)
        self.method.discard_pending()
        self.skipped_steps += 1
        self.consecutive_nonfinite += 1
        self._stop_if_too_many_nonfinite(state)

    def _read_device_skips(self) -> None:
        """Bring the device's skip counts to the host (logged steps, checkpoints): a host synchronisation."""
        if self.device_skips is not None:
            skipped, self.consecutive_nonfinite = self.device_skips.read()
            self.skipped_steps += skipped

    def _stop_if_too_many_nonfinite(self, state: StepState) -> None:
        if self.consecutive_nonfinite >= self.cfg.train.max_nonfinite:
            path = self.save_checkpoint()
            raise VitsslError(
                f"the loss was not finite for {self.consecutive_nonfinite} steps in a row (step {state.step}); the "
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
        resumed = self._resume()
        self.budget.start(self.step)
        if resumed and self.step >= self.total_steps:
            return FitResult(self.run_dir, self.step, self.last_loss, None, self.skipped_steps, already_finished=True)
        self.run.save_config(self.cfg)
        self.method.train()
        with StopSignals() as signals:
            self._loop(stop_at_step, signals, resumed)
        self._report_bad_inputs()
        if self.step < self.total_steps:
            return FitResult(self.run_dir, self.step, self.last_loss, None, self.skipped_steps)
        knn = self._log_knn()
        self._pictures()
        self._finish(knn)
        return FitResult(self.run_dir, self.step, self.last_loss, knn, self.skipped_steps)

    def _loop(self, stop_at_step: int | None, signals: StopSignals, resumed: bool) -> None:
        """Optimiser steps until the end (or ``stop_at_step``, or a stop signal), then a checkpoint."""
        t = self.cfg.train
        enabled = t.progress and dist.is_main()
        bar = Progress(self.total_steps, self.step, self.images_per_step, enabled, "resumed" if resumed else "pretrain")
        batches: Iterator[ViewBatch] = iter(())
        epoch = -1
        if self.step == 0 and t.knn_every:
            self._log_knn()  # the curve starts at the network's initialisation
        end = min(self.total_steps, stop_at_step) if stop_at_step is not None else self.total_steps
        loss: torch.Tensor | None = None
        while self.step < end:
            if self.step // self.steps_per_epoch != epoch:
                epoch = self.step // self.steps_per_epoch
                batches = self.batches_from(epoch, self.step - epoch * self.steps_per_epoch)
            log = self.step % t.log_every == 0 or self.step == self.total_steps - 1
            state = self.state_at(self.step, log=log)
            self.apply_state(state)
            loss, metrics = self.optimizer_step(batches, state)
            if log or self.device_skips is None:  # "device" mode reads the loss only on logged steps
                self.last_loss = loss.item()
            if log and self.device_skips is not None:
                self._read_device_skips()
                self._stop_if_too_many_nonfinite(state)
            self.step += 1
            fitted = self.budget.after_step(self.step, self.total_steps, self.device, self.planned_steps)
            if fitted is not None:
                self._fit_to_budget(fitted)
                end = min(self.total_steps, stop_at_step) if stop_at_step is not None else self.total_steps
                bar.set_total(self.total_steps)
            speed = bar.step(self.last_loss, epoch)
            if log:
                self._log_step(state, self.last_loss, speed, metrics)
            signum = signals.requested(self.device, lagged=self.device_skips is not None)
            if signum is not None:
                signals.drain()
                bar.close()
                self._stop_on_signal(signum)
            self._periodic()
        signals.drain()
        bar.close()
        if self.device_skips is not None and loss is not None:
            self.last_loss = loss.item()  # the loss of the step the run stopped at, logged or not
        self.save_checkpoint()

    @property
    def planned_steps(self) -> int:
        """The steps of ``optim.epochs``: the most a budget allows."""
        return max(1, round(self.cfg.optim.epochs * self.steps_per_epoch))

    def _fit_to_budget(self, total_steps: int, quiet: bool = False) -> None:
        """Set the run's length to ``total_steps`` (``train.budget_minutes``) with its learning-rate warm-up in
        proportion (other epoch-based schedules keep their epochs)."""
        planned = self.planned_steps
        self.warmup_steps = round(self.cfg.optim.warmup_epochs * self.steps_per_epoch * total_steps / planned)
        if total_steps != self.total_steps and dist.is_main() and not quiet:
            print(
                f"vitssl: train.budget_minutes={self.cfg.train.budget_minutes:g}: {total_steps} steps fit "
                f"({total_steps / self.steps_per_epoch:.2f} epochs) of {planned}; the schedules end there",
                flush=True,
            )
        self.total_steps = total_steps

    def _report_bad_inputs(self) -> None:
        """One line for the whole run (every process's unreadable inputs) when any were skipped; a collective."""
        gathered = dist.all_gather_object(self.bad_inputs.entries())
        if dist.is_main():
            tally = BadInputs()
            for entries in gathered:
                tally.add(entries)  # type: ignore[arg-type]  # lists of str, from every process
            tally.report(training=True)

    def _stop_on_signal(self, signum: int) -> None:
        path = self.save_checkpoint()
        self._report_bad_inputs()
        name = signal.Signals(signum).name
        raise Interrupted(
            f"{name} received: stopped after step {self.step} of {self.total_steps} and saved {path}; "
            "re-run the same command to resume exactly where it stopped",
            signum,
            report=dist.is_main(),  # one line per run, not per process
        )

    def _log_step(self, state: StepState, loss: float, speed: float, metrics: dict[str, Any]) -> None:
        if metrics:  # means over processes, like the loss (one small all-reduce, only on logged steps)
            values = dist.all_reduce_mean(
                torch.tensor([to_float(v) for v in metrics.values()], dtype=torch.float64, device=self.device)
            )
            metrics = dict(zip(metrics, values.tolist(), strict=True))
        self.logger.log(
            state.step,
            {
                "loss": loss,
                "lr": state.lr,
                "weight_decay": state.weight_decay,
                "images_per_s": speed,
                "epoch": state.epoch_float,
                "skipped_steps": self.skipped_steps,
                "skipped_images": self.skipped_images,
                "bad_shards": self.bad_inputs.bad_shards,
                **state.values,
                **metrics,
            },
        )

    def _periodic(self) -> None:
        """k-NN, pictures and checkpoints every so many steps (the last step has its own, in ``fit``)."""
        t, step = self.cfg.train, self.step
        if step >= self.total_steps:
            return
        if t.knn_every and step % t.knn_every == 0:
            self._log_knn()
        if t.picture_every and step % t.picture_every == 0:
            self._pictures()
        if step % t.checkpoint_every == 0:
            self.save_checkpoint()

    def _log_knn(self) -> dict[int, dict[str, float]] | None:
        if self.knn is None:
            return None
        knn = self.knn.evaluate(self.method.eval_backbone())
        k = self.cfg.train.knn_k
        self.logger.log(self.step, {"knn_top1": knn[k]["top1"], "knn_top5": knn[k]["top5"]})
        self.method.train()
        return knn

    def _pictures(self) -> None:
        """The method's pictures of the latest batch, written into RUN/pictures (never fatal)."""
        if self.last_batch is None or not self.run.main:
            return
        try:
            for name, image in self.method.pictures(self.last_batch).items():
                self.run.write_picture(name, self.step, image)
        except Exception as exc:  # a picture must never cost the run
            import warnings

            warnings.warn(f"could not draw the step-{self.step} pictures: {exc}", stacklevel=2)
        finally:
            self.method.train()

    def _finish(self, knn: dict[int, dict[str, float]] | None) -> None:
        if knn is not None:
            k = self.cfg.train.knn_k
            self.run.write_json("knn_online.json", {"step": self.step, "k": k, **{str(n): v for n, v in knn.items()}})
        self.run.finish()


__all__ = ["Trainer", "FitResult", "to_float"]
