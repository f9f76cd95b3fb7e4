"""The pretraining images as a trainer consumes them: this process's micro-batches of an epoch, from any step.

Every view is a function of (seed, epoch, image index), and the sampler splits each epoch's permutation across
processes, so a run sees the same views whatever the number of loader workers, and a resumed run continues with
exactly the batches it would have seen. WebDataset shards (``data.train`` a shard folder or brace pattern) are
read by :class:`~vitssl.data.shards.dataset.ShardDataset`, which splits shards over processes and loader workers; see
docs/data.md for their resume semantics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from torch.utils.data import Dataset

from vitssl.data.batches import ViewBatch
from vitssl.data.loading.loader import build_loader
from vitssl.data.loading.workers import stop_signals_held
from vitssl.data.shards.dataset import ShardDataset, build_shard_loader


class PretrainData:
    """A training set plus how to batch it.

    Args:
        dataset: A map-style dataset whose samples carry the method's views (e.g. ``ImageFolderDataset``).
        batch_size: Images per micro-batch in this process.
        num_workers: Loader worker processes.
        seed: Data seed (order and views).
        collate_fn: Turns samples into a :class:`ViewBatch` (the method's).
        rank: This process's index.
        world_size: Number of processes.
        pin_memory: Pin batches for fast copies to an accelerator.
        repeats: Repeated augmentation (``data.repeated_augmentation``): copies of each image per epoch.
    """

    def __init__(
        self,
        dataset: Dataset[dict[str, Any]],
        batch_size: int,
        num_workers: int,
        seed: int,
        collate_fn: Callable[[Sequence[dict[str, Any]]], ViewBatch],
        rank: int = 0,
        world_size: int = 1,
        pin_memory: bool = False,
        repeats: int = 1,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.collate_fn = collate_fn
        self.rank, self.world_size = rank, world_size
        self.pin_memory = pin_memory
        self.repeats = repeats

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def batches(self, epoch: int, start_sample: int = 0) -> Iterator[ViewBatch]:
        """This process's micro-batches of ``epoch``, skipping the first ``start_sample`` samples it would see."""
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
        if isinstance(self.dataset, ShardDataset):
            loader = build_shard_loader(
                self.dataset,
                self.batch_size,
                self.num_workers,
                epoch=epoch,
                start=start_sample,
                pin_memory=self.pin_memory,
                collate_fn=self.collate_fn,
            )
        else:
            loader = build_loader(
                self.dataset,
                batch_size=self.batch_size,
                num_workers=self.num_workers,
                seed=self.seed,
                epoch=epoch,
                start=start_sample,
                rank=self.rank,
                world_size=self.world_size,
                pin_memory=self.pin_memory,
                collate_fn=self.collate_fn,
                repeats=self.repeats,
            )
        with stop_signals_held():  # the workers start here
            return iter(loader)
