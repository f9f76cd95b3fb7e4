"""Decide whether a run folder's checkpoint may be continued with the current config."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from vitssl import distributed as dist
from vitssl.checkpoints import set_rng_state
from vitssl.config import PretrainConfig, method_sections
from vitssl.errors import VitsslError

# Keys that change how a run is executed or reported, not what it computes: they may differ on resume.
HARMLESS_KEYS = {
    "data.num_workers",
    "data.cache",
    "train.device",
    "train.threads",
    "train.compile",
    "model.attention",
    "model.grad_checkpointing",
    "train.progress",
    "train.loggers",
    "train.wandb_project",
    "train.log_every",
    "train.checkpoint_every",
    "train.knn_every",
    "train.max_nonfinite",
    "train.nonfinite_check",
    "train.knn_max_train",
    "train.knn_max_val",
    "train.knn_k",
    "data.val",
    "data.knn_train",
    "data.cache_dir",
    # Where the run lives and what it is called are not its recipe: a moved or renamed run folder resumes.
    "train.out_dir",
    "name",
    "train.keep_checkpoints",
}


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def config_differences(
    saved: dict[str, Any], current: dict[str, Any], also_harmless: set[str] | frozenset[str] = frozenset()
) -> list[str]:
    """The dotted keys whose values differ and matter; sections of methods this run does not use are ignored (a
    method added to vitssl after the run started must not stop it from resuming)."""
    old, new = _flatten(saved), _flatten(current)
    # Compared: the generic sections and the sections of the current method. A section saved by a method that is
    # not registered in this process (a plug-in, a test's toy method) is as unused as a known one.
    generic = {f.name for f in dataclasses.fields(PretrainConfig) if not f.metadata.get("sections")}
    used = generic | set(method_sections(str(current.get("method"))))
    keys = sorted(set(old) | set(new))
    return [
        k
        for k in keys
        if k not in HARMLESS_KEYS | also_harmless and k.split(".")[0] in used and old.get(k) != new.get(k)
    ]


def check_resumable(
    saved: dict[str, Any], current: dict[str, Any], path: Path, also_harmless: set[str] | frozenset[str] = frozenset()
) -> None:
    """Refuse to continue a run whose checkpoint was made with a different recipe (it would silently mix two
    experiments); the old files are left untouched."""
    diffs = config_differences(saved, current, also_harmless)
    if diffs:
        shown = ", ".join(f"{k} ({_flatten(saved).get(k)!r} -> {_flatten(current).get(k)!r})" for k in diffs[:4])
        more = f" and {len(diffs) - 4} more" if len(diffs) > 4 else ""
        raise VitsslError(
            f"{path} was made with a different config: {shown}{more}; use a new train.out_dir "
            "(or the old settings) — nothing was overwritten"
        )


def check_same_global_batch(ckpt: dict[str, Any], images_per_step: int, cfg: PretrainConfig, path: Path) -> None:
    """A run resumes with another number of processes only when the global batch is the same."""
    saved = int(ckpt.get("images_per_step", images_per_step))
    if saved != images_per_step:
        procs = int(ckpt.get("world_size", 1))
        raise VitsslError(
            f"{path} was trained with a global batch of {saved} images per step ({procs} process(es)); this "
            f"run has {images_per_step} ({dist.world_size()} process(es) x data.batch_size="
            f"{cfg.data.batch_size} x optim.accumulate={cfg.optim.accumulate}); set data.batch_size "
            f"so that the global batch is {saved} again, or use a new train.out_dir"
        )


def restore_rng(ckpt: dict[str, Any], seed: int) -> None:
    """Each process continues its own random stream; with another number of processes (same data and weights)
    the drop-path masks of the other processes are drawn afresh."""
    ranks = ckpt.get("rng_ranks") or []
    if len(ranks) == dist.world_size():
        set_rng_state(ranks[dist.rank()])
        return
    set_rng_state(ckpt["rng"])
    if dist.rank() > 0:
        torch.manual_seed(seed + 1000 * int(ckpt["step"]) + dist.rank())
