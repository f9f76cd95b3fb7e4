"""The training loop. It knows nothing about any method: a method turns a batch into a loss, the trainer turns
the loss into an update, and writes everything a run needs into one run folder."""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vitssl import __version__
from vitssl import distributed as dist
from vitssl.checkpoints import LAST, load_checkpoint, rng_state, save_atomic, set_rng_state
from vitssl.config import PretrainConfig, save_config, to_dict
from vitssl.data.build import build_pretrain_dataset
from vitssl.data.loader import build_loader
from vitssl.device import resolve_device, resolve_precision
from vitssl.engine.logger import MetricsLogger, to_float
from vitssl.engine.resume import check_resumable
from vitssl.errors import VitsslError
from vitssl.eval.knn_eval import KNNMonitor
from vitssl.methods.base import Method, build_method
from vitssl.optim import build_optimizer, clip_gradients_per_tensor_
from vitssl.schedules import StepState, cosine_schedule


@dataclass
class FitResult:
    run_dir: Path
    steps: int
    final_loss: float
    knn: dict[int, dict[str, float]] | None = None
    skipped_steps: int = 0


class Trainer:
    """Pretrains ``method`` (built from ``cfg`` when not given) and keeps the run folder resumable."""

    def __init__(self, cfg: PretrainConfig, method: Method | None = None) -> None:
        self.cfg = cfg
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.device = resolve_device(cfg.train.device)
        dist.init_from_env(self.device)
        self.run_dir = cfg.run_dir
        torch.manual_seed(cfg.train.seed)  # the initial weights depend on the seed only
        self.method = (method or build_method(cfg)).to(self.device)
        self.dataset = build_pretrain_dataset(cfg, self.method.views, self.method.train_transform())
        self.images_per_step = cfg.data.batch_size * cfg.optim.accumulate * dist.world_size()
        self.steps_per_epoch = len(self.dataset) // self.images_per_step
        if self.steps_per_epoch == 0:
            raise VitsslError(
                f"the training set has {len(self.dataset)} images, fewer than one optimiser step "
                f"needs ({self.images_per_step}); lower data.batch_size or optim.accumulate"
            )
        self.total_steps = max(1, round(cfg.optim.epochs * self.steps_per_epoch))
        self.peak_lr = cfg.optim.lr * self.images_per_step / 256  # linear scaling rule
        self.optimizer = build_optimizer(self.method.param_groups(), self.peak_lr, cfg.optim.betas, self.device)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.amp_dtype = resolve_precision(cfg.train.precision, self.device)
        use_scaler = self.amp_dtype == torch.float16 and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.step = 0
        self.skipped_steps = 0
        self.consecutive_nonfinite = 0
        self.skipped_images = 0
        self.logger = MetricsLogger(self.run_dir, enabled=dist.is_main())
        self.knn = KNNMonitor.maybe(cfg, self.device)
        self.last_batch: dict | None = None  # the latest micro-batch, for the method's pictures

    # -- schedules ----------------------------------------------------------------------------------------
    def state_at(self, step: int, log: bool = False) -> StepState:
        o, spe = self.cfg.optim, self.steps_per_epoch
        state = StepState(step=step, steps_per_epoch=spe, total_steps=self.total_steps, log=log)
        state.lr = cosine_schedule(step, self.total_steps, self.peak_lr, o.min_lr, round(o.warmup_epochs * spe))
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
        return {
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "step": self.step,
            "skipped_steps": self.skipped_steps,
            "rng": rng_state(),
            "config": to_dict(self.cfg),
            "version": __version__,
        }

    def save_checkpoint(self) -> Path:
        path = self.run_dir / LAST
        if dist.is_main():
            save_atomic(self.checkpoint_dict(), path)
        dist.barrier()
        return path

    def _resume(self) -> bool:
        path = self.run_dir / LAST
        if not path.exists():
            return False
        ckpt = load_checkpoint(path)
        check_resumable(ckpt["config"], to_dict(self.cfg), path)
        try:
            self.method.load_state_dict(ckpt["method"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise VitsslError(
                f"checkpoint {path} does not match this model ({str(exc).splitlines()[0]}); use a new train.out_dir"
            ) from None
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.step = int(ckpt["step"])
        self.skipped_steps = int(ckpt.get("skipped_steps", 0))
        set_rng_state(ckpt["rng"])
        self.logger.truncate_after(self.step)
        return True

    # -- one optimiser step -------------------------------------------------------------------------------
    def _to_device(self, batch: dict) -> dict:
        """Move every tensor of the batch (and every list of tensors, e.g. the views) to the device."""
        nb = self.device.type == "cuda"
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                batch[key] = value.to(self.device, non_blocking=nb)
            elif isinstance(value, list) and value and all(isinstance(v, torch.Tensor) for v in value):
                batch[key] = [v.to(self.device, non_blocking=nb) for v in value]
        return batch

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def optimizer_step(self, batches, state: StepState) -> tuple[float, dict[str, Any]]:
        self.optimizer.zero_grad(set_to_none=True)
        accumulate = self.cfg.optim.accumulate
        total = torch.zeros((), device=self.device)
        metrics: dict[str, Any] = {}
        for _ in range(accumulate):
            batch = self._to_device(next(batches))
            self.last_batch = batch
            self.skipped_images += int(batch.get("skipped", 0))
            with self._autocast():
                out = self.method.training_step(batch, state)
            loss = out.loss / accumulate
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            total += out.loss.detach().float()
            metrics = out.metrics
        loss_value = float(total.item()) / accumulate
        if not math.isfinite(loss_value):
            self._skip_nonfinite(state)
            return loss_value, metrics
        self.consecutive_nonfinite = 0
        self.method.before_optimizer_step(state)
        dist.all_reduce_gradients_(self.params)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.cfg.optim.clip_grad > 0:
            clip_gradients_per_tensor_(self.params, self.cfg.optim.clip_grad)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.method.after_optimizer_step(state)
        return loss_value, metrics

    def _skip_nonfinite(self, state: StepState) -> None:
        """The update is dropped before it reaches the weights; too many in a row stop the run cleanly."""
        self.optimizer.zero_grad(set_to_none=True)
        self.method.discard_pending()
        self.skipped_steps += 1
        self.consecutive_nonfinite += 1
        if self.consecutive_nonfinite >= self.cfg.train.max_nonfinite:
            path = self.save_checkpoint()
            raise VitsslError(
                f"the loss was not finite for {self.consecutive_nonfinite} steps in a row (step {state.step}); the "
                f"weights were left untouched and saved to {path}; lower optim.lr, raise optim.warmup_epochs or "
                "use train.precision=fp32, then re-run to resume"
            )

    # -- the loop -----------------------------------------------------------------------------------------
    def batches_from(self, epoch: int, start_step: int):
        """An iterator over this process's micro-batches of ``epoch``, starting at optimiser step ``start_step``."""
        self.dataset.set_epoch(epoch)
        loader = build_loader(
            self.dataset,
            batch_size=self.cfg.data.batch_size,
            num_workers=self.cfg.data.num_workers,
            seed=self.cfg.train.seed,
            epoch=epoch,
            start=start_step * self.images_per_step // dist.world_size(),
            rank=dist.rank(),
            world_size=dist.world_size(),
            pin_memory=self.device.type == "cuda",
            collate_fn=self.method.train_collate(),
        )
        return iter(loader)

    def _online_knn(self) -> dict[int, dict[str, float]] | None:
        if self.knn is None:
            return None
        return self.knn.evaluate(self.method.eval_backbone())

    def fit(self, stop_at_step: int | None = None) -> FitResult:
        """Train to ``optim.epochs``, resuming from the run folder when it has a checkpoint.

        Args:
            stop_at_step: stop early (with a checkpoint) after this optimiser step, as if the run had been
                interrupted there; the schedules still span the whole run, so re-running continues exactly.
        """
        resumed = self._resume()
        if dist.is_main():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.run_dir / "config.yaml")
        self.method.train()
        t = self.cfg.train
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            disable=not (t.progress and dist.is_main()),
            desc="resumed" if resumed else "pretrain",
            dynamic_ncols=True,
            unit="step",
        )
        batches, epoch, loss, speed = None, -1, float("nan"), 0.0
        last_time = time.perf_counter()
        if self.step == 0 and t.knn_every:
            self._log_knn()  # the curve starts at the network's initialisation
        end = min(self.total_steps, stop_at_step) if stop_at_step is not None else self.total_steps
        while self.step < end:
            if self.step // self.steps_per_epoch != epoch:
                epoch = self.step // self.steps_per_epoch
                batches = self.batches_from(epoch, self.step - epoch * self.steps_per_epoch)
            log = self.step % t.log_every == 0 or self.step == self.total_steps - 1
            state = self.state_at(self.step, log=log)
            self.apply_state(state)
            loss, metrics = self.optimizer_step(batches, state)
            self.step += 1
            now = time.perf_counter()
            instant = self.images_per_step / max(now - last_time, 1e-9)
            speed = 0.9 * speed + 0.1 * instant if speed else instant  # smoothed for the progress bar
            last_time = now
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{speed:.0f}", epoch=epoch)
            if log:
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
                        **state.values,
                        **metrics,
                    },
                )
            if t.knn_every and self.step % t.knn_every == 0 and self.step < self.total_steps:
                self._log_knn()
            if t.picture_every and self.step % t.picture_every == 0 and self.step < self.total_steps:
                self._picture()
            if self.step % t.checkpoint_every == 0 and self.step < self.total_steps:
                self.save_checkpoint()
        bar.close()
        self.save_checkpoint()
        if self.step < self.total_steps:
            return FitResult(self.run_dir, self.step, loss, None, self.skipped_steps)
        knn = self._log_knn()
        self._picture()
        self._finish(knn)
        return FitResult(self.run_dir, self.step, loss, knn, self.skipped_steps)

    def _log_knn(self) -> dict[int, dict[str, float]] | None:
        knn = self._online_knn()
        if knn is not None:
            k = self.cfg.train.knn_k
            self.logger.log(self.step, {"knn_top1": knn[k]["top1"], "knn_top5": knn[k]["top5"]})
            self.method.train()
        return knn

    def _picture(self) -> None:
        """Let the method draw the latest batch into RUN/pictures (main process only; never fatal)."""
        if self.last_batch is None or not dist.is_main():
            return
        try:
            self.method.visualise(self.last_batch, self.run_dir / "pictures", self.step)
        except Exception as exc:  # a picture must never cost the run
            import warnings

            warnings.warn(f"could not write the step-{self.step} picture: {exc}", stacklevel=2)
        finally:
            self.method.train()

    def _finish(self, knn: dict[int, dict[str, float]] | None) -> None:
        self.logger.close()
        if not dist.is_main():
            return
        if knn is not None:
            (self.run_dir / "knn_online.json").write_text(
                json.dumps(
                    {"step": self.step, "k": self.cfg.train.knn_k, **{str(k): v for k, v in knn.items()}},
                    indent=2,
                )
            )
        from vitssl.plots import plot_training_curves

        with contextlib.suppress(Exception):  # a missing plot must never cost the trained weights
            plot_training_curves(self.run_dir / "metrics.jsonl", self.run_dir / "curves.png")


def fit(cfg: PretrainConfig) -> FitResult:
    return Trainer(cfg).fit()


__all__ = ["Trainer", "FitResult", "fit", "to_float"]
