"""The Python API of training: ``vitssl.pretrain("configs/demo.yaml", **{"optim.epochs": 1})``.

Building a pretraining run from its config (process group, seed, method, data, online k-NN and trainer) happens
here and only here: the trainer receives the pieces ready-made, and ``vitssl pretrain`` calls the same functions.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from vitssl import distributed as dist
from vitssl.checkpoints import holds_checkpoint
from vitssl.config import PretrainConfig, load_config, with_values
from vitssl.data.build import build_pretrain_data
from vitssl.device import resolve_device
from vitssl.engine.run_folder import RunFolder
from vitssl.engine.trainer import FitResult, Trainer
from vitssl.eval.knn_eval import KNNMonitor, KNNSettings, knn_of_backbone
from vitssl.eval.loading import labelled_sets
from vitssl.eval.sources import resolve_source
from vitssl.log import configure_unless_configured, logger
from vitssl.methods import Method, build_method
from vitssl.models.runtime import configure_backbones
from vitssl.models.weights import load_backbone_weights
from vitssl.run_lock import RunInUse, check_not_in_use


def build_trainer(cfg: PretrainConfig, method: Method | None = None, dataset: Dataset[Any] | None = None) -> Trainer:
    """A :class:`Trainer` for ``cfg``: joins the torchrun process group when there is one, seeds the weights,
    builds the method (unless given) and its training data (``data.train``, or a user's own map-style ``dataset``
    of images), and the online k-NN when ``data.val`` is set."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = dist.init_from_env(resolve_device(cfg.train.device))
    RunFolder(cfg.run_dir, main=dist.is_main()).prepare()  # an unwritable folder is one line, before any work
    if dist.world_size() > 1 and device.type == "cpu" and not cfg.train.threads:
        # processes x threads must not exceed the cores, or the processes measure oversubscription
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist.world_size()))
    torch.manual_seed(cfg.train.seed)  # the initial weights depend on the seed only: equal on every process
    method = method or build_method(cfg)
    if cfg.model.init_from:
        init_backbones(method, cfg.model.init_from, cfg.model.init_strict)
    dist.synchronise_batch_norm(method.to(device), device)  # converts the BatchNorm layers in place
    backbones = method.backbones()
    if backbones:
        student, *others = backbones
        m = cfg.model
        configure_backbones(student, others, device, m.attention, m.grad_checkpointing, cfg.train.compile)
    if dist.world_size() > 1:
        torch.manual_seed(cfg.train.seed + dist.rank())  # but each process draws its own drop-path masks
    data = build_pretrain_data(
        cfg,
        method.views,
        method.train_transform(),
        method.train_collate(),
        rank=dist.rank(),
        world_size=dist.world_size(),
        pin_memory=device.type == "cuda",
        dataset=dataset,
    )
    return Trainer(method, data, cfg, device, knn=KNNMonitor.maybe(cfg, device))


def init_backbones(method: Method, path: str, strict: bool = True) -> None:
    """Load the backbone weights at ``path`` into every copy of the method's backbone (student and teacher), with
    name and shape checks; one line reports what was loaded (and, when not strict, what was skipped)."""
    reports = [load_backbone_weights(backbone, path, strict=strict) for backbone in method.backbones()]
    if reports and dist.is_main():
        logger.info(f"model.init_from: {reports[0].summary()}")


def fresh_run_dir(cfg: PretrainConfig) -> PretrainConfig:
    """``cfg`` with ``train.out_dir`` moved to the first of RUN, RUN-2, RUN-3, ... that holds no checkpoint and
    that no live run trains."""
    base, candidate, n = cfg.run_dir, cfg.run_dir, 1
    while holds_checkpoint(candidate) or _in_use(candidate):
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, out_dir=str(candidate)))


def _in_use(run_dir: Path) -> bool:
    try:
        check_not_in_use(run_dir)
    except RunInUse:
        return True
    return False


def train(cfg: PretrainConfig, stop_at_step: int | None = None, dataset: Dataset[Any] | None = None) -> FitResult:
    """Pretrain to the end of ``cfg``'s schedule (or to ``stop_at_step``), resuming from the run folder."""
    return build_trainer(cfg, dataset=dataset).fit(stop_at_step=stop_at_step)


def pretrain(
    config: str | Path | PretrainConfig | None = None, dataset: Dataset[Any] | None = None, **overrides: Any
) -> Path:
    """Pretrain from a YAML preset (or a loaded config, or the defaults when None) and return the run folder.

    ``overrides`` are config keys, dotted or nested, with Python values: ``pretrain("configs/demo.yaml",
    **{"optim.epochs": 1, "train.out_dir": "runs/try"})`` or ``pretrain(path, optim={"epochs": 1})``. As with
    ``vitssl pretrain``, a run folder that holds a run is resumed. ``dataset``: a map-style
    ``torch.utils.data.Dataset`` of PIL images or (C, H, W) tensors in [0, 1] (or ``(image, label)`` pairs) to
    pretrain on instead of ``data.train``. Messages go to the ``vitssl`` logger (to stderr
    when the caller configured no logging).
    """
    configure_unless_configured()
    if isinstance(config, PretrainConfig):
        cfg = with_values(config, overrides) if overrides else config
    else:
        cfg = load_config(config, values=overrides)
    return train(cfg, dataset=dataset).run_dir


def knn(
    source: str | Path,
    train: str | None = None,
    val: str | None = None,
    k: Sequence[int] = (10, 20, 100, 200),
    temperature: float = 0.07,
    device: str = "cpu",
    max_train: int | None = None,
    max_val: int | None = None,
) -> dict[int, dict[str, float]]:
    """Weighted k-NN top-1 / top-5 (percent) of any SOURCE's evaluation backbone, as ``vitssl knn`` computes it.

    Args:
        source: A run folder or checkpoint, an export folder, ``timm:NAME``, ``hf:REPO_OR_FOLDER`` or an authors'
            release file (see :func:`vitssl.load_backbone`).
        train: The labelled memory set (``root/<class>/<images>`` or a named dataset); a run's default when None.
        val: The labelled query set, likewise.
        k: The neighbour counts.
        temperature: The weighting temperature of Wu et al. (2018), 0.07 in DINO.
        device: Where to compute the features.
        max_train: A fixed stratified cap on the memory set.
        max_val: A fixed stratified cap on the query set.

    Returns:
        ``{k: {"top1": ..., "top5": ...}}``.
    """
    cfg, backbone = resolve_source(source, device=device)
    memory, queries = labelled_sets(cfg, train, val, max_train, max_val, purpose="score with k-NN")
    settings = KNNSettings(train, val, tuple(k), temperature, max_train, max_val, device=device)
    return knn_of_backbone(backbone, memory, queries, settings)
