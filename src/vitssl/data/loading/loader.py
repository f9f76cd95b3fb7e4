"""Batching samples into crop-major view tensors, and the loader that does it.

Crop-major order (docs/methods.md): ``views[v]`` is the (B, 3, h, w) batch of crop v, so a method can run its
backbone once per crop resolution (all global crops together, then all local crops) as DINO does (Caron et
al. 2021, arXiv 2104.14294).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from vitssl.data.batches import EvalBatch, ViewBatch, bad_paths_of, stack_by_resolution
from vitssl.data.loading.sampler import EpochSampler
from vitssl.data.loading.workers import init_worker

__all__ = ["build_loader", "collate_views", "set_loader_epoch"]


def collate_views(samples: Sequence[dict[str, Any]]) -> ViewBatch | EvalBatch:
    """Stack dataset samples into a batch.

    Args:
        samples: Dicts with ``"views"`` (a list of V tensors, or one tensor), ``"label"``, ``"index"``,
            ``"skipped"`` and ``"bad_paths"``, as :class:`~vitssl.data.sources.folders.ImageFolderDataset` returns them.

    Returns:
        A :class:`ViewBatch` (``views``: V tensors (B, 3, h, w)) or, when each sample's views is a single tensor
        (evaluation), an :class:`EvalBatch` (``images``: one (B, 3, h, w) tensor); ``skipped`` totals the
        unreadable files the batch's samples stepped over, and ``bad_paths`` names them (each once).

    Raises:
        TypeError: The views are neither tensors nor lists of tensors (e.g. the dataset has no transform).
    """
    first = samples[0]["views"]
    label = torch.tensor([int(sample["label"]) for sample in samples], dtype=torch.long)
    index = torch.tensor([int(sample["index"]) for sample in samples], dtype=torch.long)
    skipped = sum(int(sample.get("skipped", 0)) for sample in samples)
    bad_paths = bad_paths_of(samples)
    if isinstance(first, torch.Tensor):
        images = torch.stack([sample["views"] for sample in samples])
        return EvalBatch(images=images, label=label, index=index, skipped=skipped, bad_paths=bad_paths)
    if isinstance(first, (list, tuple)) and all(isinstance(view, torch.Tensor) for view in first):
        per_crop = [[sample["views"][crop] for sample in samples] for crop in range(len(first))]
        views = stack_by_resolution(per_crop)
        return ViewBatch(views=views, label=label, index=index, skipped=skipped, bad_paths=bad_paths)
    raise TypeError(
        f"cannot batch views of type {type(first).__name__}; give the dataset a transform that returns "
        "tensors (MultiCropTransform or EvalTransform)"
    )


def build_loader(
    dataset: Dataset[dict[str, Any]],
    batch_size: int,
    num_workers: int,
    seed: int,
    epoch: int = 0,
    start: int = 0,
    rank: int = 0,
    world_size: int = 1,
    shuffle: bool = True,
    drop_last: bool = True,
    pin_memory: bool = False,
    collate_fn: Callable[[Sequence[dict[str, Any]]], Any] = collate_views,
    repeats: int = 1,
) -> DataLoader[dict[str, Any]]:
    """A ``DataLoader`` over ``dataset`` with a seeded :class:`EpochSampler` and :func:`collate_views`.

    The dataset's ``seed`` and epoch are set to match the sampler's (when it has them), so every view is a
    function of (seed, epoch, index) only. Workers are not persistent: each epoch's workers start from the
    dataset as it is when iteration begins, which carries the new epoch to them. Move to the next epoch with
    :func:`set_loader_epoch`.

    Args:
        dataset: A map-style dataset, typically an ``ImageFolderDataset``.
        batch_size: Samples per batch in this process.
        num_workers: Loader worker processes (0 loads in the main process).
        seed: The data seed (shuffling and views).
        epoch: The epoch to start in.
        start: Samples of this epoch already consumed by this process (for mid-epoch resume).
        rank: This process's index.
        world_size: Number of processes.
        shuffle: Shuffle each epoch (training) or keep order (evaluation).
        drop_last: Yield only whole batches, the same number on every process.
        pin_memory: Pin batches in page-locked memory for faster copies to an accelerator.
        collate_fn: Turns a list of samples into a batch (default :func:`collate_views`; a method may bring its
            own, e.g. SiT's, which pastes rectangles between the batch's images).
        repeats: Repeated augmentation: copies of each image per epoch, each with its own views (training only).

    Returns:
        The loader; its ``sampler`` is the :class:`EpochSampler`.
    """
    sampler = EpochSampler(
        len(dataset),  # type: ignore[arg-type]  # map-style datasets have __len__; Dataset's type does not
        seed,
        rank=rank,
        world_size=world_size,
        shuffle=shuffle,
        drop_last=drop_last,
        batch_size=batch_size,
        repeats=repeats,
    )
    if hasattr(dataset, "seed"):
        dataset.seed = seed
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        drop_last=False,  # the sampler already yields whole batches when asked to
        persistent_workers=False,
        worker_init_fn=init_worker if num_workers > 0 else None,
    )
    set_loader_epoch(loader, epoch, start)
    return loader


def set_loader_epoch(loader: DataLoader[dict[str, Any]], epoch: int, start: int = 0) -> None:
    """Point a loader from :func:`build_loader` at ``epoch``, skipping its first ``start`` samples.

    Sets the epoch of both the sampler (which permutation) and the dataset (which views). Call it before
    iterating over the loader for that epoch.
    """
    sampler = loader.sampler
    if not isinstance(sampler, EpochSampler):
        raise TypeError("set_loader_epoch needs a loader made by build_loader (with an EpochSampler)")
    sampler.set_epoch(epoch)
    sampler.set_start(start)
    set_epoch = getattr(loader.dataset, "set_epoch", None)
    if callable(set_epoch):
        set_epoch(epoch)
