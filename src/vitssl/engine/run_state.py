"""What a run's checkpoint holds, and how a trainer continues from one: the state of every piece the trainer
owns (method, optimiser, loss scaler, step, skipped steps, the budget's decided length, random streams) and
what a resumed run must match (the recipe, the global batch)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitssl import __version__
from vitssl import distributed as dist
from vitssl.checkpoints import rng_state
from vitssl.config import to_dict
from vitssl.engine.resume import check_resumable, check_same_global_batch, restore_rng
from vitssl.errors import VitsslError
from vitssl.log import logger

if TYPE_CHECKING:  # the trainer saves and restores itself through these functions
    from vitssl.engine.trainer import Trainer


def capture(trainer: Trainer) -> dict[str, Any]:
    """The checkpoint of ``trainer`` now; a collective (the random states of all processes)."""
    trainer.guard.refresh()  # the skip counts a device guard still holds
    budget = trainer.budget
    return {
        "method": trainer.method.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scaler": trainer.precision.state_dict(),
        "step": trainer.step,
        "total_steps": trainer.total_steps,
        "budget_decided": budget.minutes is not None and budget.decided,
        "last_loss": trainer.last_loss,
        "skipped_steps": trainer.skipped_steps,
        "rng": rng_state(),
        "rng_ranks": dist.all_gather_object(rng_state()),  # drop-path draws differ per process
        "world_size": dist.world_size(),
        "images_per_step": trainer.images_per_step,
        "config": to_dict(trainer.cfg),
        "version": __version__,
    }


def restore(trainer: Trainer, ckpt: dict[str, Any], path: Path) -> None:
    """Continue ``trainer`` from ``ckpt`` (read from ``path``), or refuse in one line when it is another run."""
    cfg = trainer.cfg
    check_same_global_batch(ckpt, trainer.images_per_step, cfg, path)
    # The same global batch split over another number of processes is the same run.
    check_resumable(ckpt["config"], to_dict(cfg), path, also_harmless={"data.batch_size"})
    try:
        trainer.method.load_state_dict(ckpt["method"])
        trainer.optimizer.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise VitsslError(
            f"checkpoint {path} does not match this model ({str(exc).splitlines()[0]}); use a new train.out_dir"
        ) from None
    trainer.precision.load_state_dict(ckpt.get("scaler"))
    trainer.step = int(ckpt["step"])
    trainer.last_loss = float(ckpt.get("last_loss", float("nan")))
    trainer.guard.skipped_steps = int(ckpt.get("skipped_steps", 0))
    budget = trainer.budget
    if budget.minutes is not None and ckpt.get("budget_decided"):
        trainer.length.fit_to(int(ckpt["total_steps"]))  # decided before the interruption
        budget.decided = budget.refined = True  # the clock restarted: keep that length
    if dist.is_main() and trainer.step < trainer.total_steps:  # said without a progress bar too: logs show it
        logger.info(f"resuming {trainer.run_dir} at step {trainer.step} of {trainer.total_steps}")
    restore_rng(ckpt, cfg.train.seed)
