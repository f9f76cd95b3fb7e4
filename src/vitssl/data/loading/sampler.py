"""A seeded, shardable, resumable sampler over dataset indices.

Each epoch's order is a permutation drawn from ``derive_seed(seed, epoch)`` alone, so every process computes
the same permutation without communicating, and takes its own shard of it. A run resumed in the middle of an
epoch skips exactly the samples it has already consumed (without loading them), then continues with the same
samples and, since views are seeded per sample, the same views it would have seen.

Repeated augmentation (``repeats`` > 1; Hoffer et al. 2019, "Augment your batch", arXiv 1901.09335, as DeiT's
``RASampler`` uses it, Touvron et al. 2021, arXiv 2012.12877, and SiT's authors with 3 repeats): each image of the
permutation is taken ``repeats`` times, the epoch keeps its length (so it holds about 1 / repeats of the distinct
images), and the copies of an image are spread over the global batch. A copy is yielded as the *virtual index*
``repeat * num_samples + index`` (:func:`encode_repeat`); the dataset splits it with :func:`decode_repeat` and
draws the copy's views from ``sample_generator(seed, epoch, index, repeat)``, so every copy gets different views.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from vitssl.data.seeding import derive_seed
from vitssl.errors import VitsslError

__all__ = ["EpochSampler", "decode_repeat", "encode_repeat", "samples_per_rank"]


def encode_repeat(index: int, repeat: int, num_samples: int) -> int:
    """The virtual index of copy ``repeat`` of sample ``index`` (copy 0 is the sample's own index)."""
    return repeat * num_samples + index


def decode_repeat(virtual: int, num_samples: int) -> tuple[int, int]:
    """``(index, repeat)`` of a virtual index from :func:`encode_repeat` (a plain index gives repeat 0)."""
    return virtual % num_samples, virtual // num_samples


def _repeated_order(order: list[int], repeats: int, total: int) -> list[int]:
    """Each index of ``order`` ``repeats`` times in a row, as virtual indices, cut to ``total``: copy r of an image
    is its r-th occurrence."""
    n = len(order)
    return [encode_repeat(i, r, n) for i in order for r in range(repeats)][:total]


def _spread(chunk: list[int], repeats: int) -> list[int]:
    """Reorder one global batch of consecutive copies so that the copies of an image are about len/repeats apart
    (every ``repeats``-th element first, then the next offset...). DeiT sends the copies to different processes;
    this does the same for any process count without depending on it, and keeps SiT's donor pairs (2k, 2k + 1)
    from being two copies of one image."""
    return [x for offset in range(repeats) for x in chunk[offset::repeats]]


def samples_per_rank(num_samples: int, world_size: int = 1, batch_size: int = 1, drop_last: bool = True) -> int:
    """How many samples each process gets per epoch.

    With ``drop_last``, every process gets the same whole number of batches and the remainder is dropped (a
    different remainder each epoch, since the permutation changes). Without it, the order is padded by
    wrapping around so each process gets ``ceil(num_samples / world_size)`` samples and the last batch may be
    partial.

    Args:
        num_samples: Dataset size.
        world_size: Number of processes.
        batch_size: Samples per batch per process (only used with ``drop_last``).
        drop_last: Drop the samples that do not fill a batch on every process.
    """
    if drop_last:
        return num_samples // (world_size * batch_size) * batch_size
    return math.ceil(num_samples / world_size)


class EpochSampler(Sampler[int]):
    """This process's share of a per-epoch seeded permutation of ``range(num_samples)``.

    Args:
        num_samples: Dataset size.
        seed: Seed of the per-epoch permutations.
        rank: This process's index, in ``[0, world_size)``.
        world_size: Number of processes sharing the data.
        shuffle: Permute (training) or keep the dataset order (evaluation).
        drop_last: Give every process only whole batches (see :func:`samples_per_rank`).
        batch_size: Samples per batch per process.
        repeats: Repeated augmentation: copies of each image per epoch (1 = off). Copies are yielded as virtual
            indices (:func:`encode_repeat`); only for shuffled, ``drop_last`` training loaders.

    Raises:
        VitsslError: The dataset holds fewer samples than one batch on every process, with ``drop_last``.
    """

    def __init__(
        self,
        num_samples: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        drop_last: bool = True,
        batch_size: int = 1,
        repeats: int = 1,
    ) -> None:
        if repeats < 1 or (repeats > 1 and not (shuffle and drop_last)):
            raise ValueError(f"repeats must be >= 1, and > 1 only with shuffle and drop_last; got {repeats}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        if batch_size < 1 or num_samples < 1:
            raise ValueError(f"need num_samples >= 1 and batch_size >= 1, got {num_samples} and {batch_size}")
        self.num_samples = num_samples
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.batch_size = batch_size
        self.repeats = repeats
        self.per_rank = samples_per_rank(num_samples, world_size, batch_size, drop_last)
        if self.per_rank == 0:
            raise VitsslError(
                f"the dataset has {num_samples} images, fewer than one batch of {batch_size} on each of "
                f"{world_size} process(es); lower data.batch_size or use more images"
            )
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's permutation; also resets :meth:`set_start` to 0, so call that afterwards."""
        self.epoch = epoch
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` samples of this process's share of the current epoch (mid-epoch resume).

        Args:
            start: Samples already consumed by this process this epoch (steps done x batch size).
        """
        if not 0 <= start <= self.per_rank:
            raise ValueError(f"start {start} is outside this epoch's {self.per_rank} samples per process")
        self.start = start

    def batches_per_epoch(self, batch_size: int | None = None) -> int:
        """Batches this process yields in a full epoch (ignoring ``start``); partial last batch included."""
        size = batch_size or self.batch_size
        return self.per_rank // size if self.drop_last else math.ceil(self.per_rank / size)

    def indices(self) -> list[int]:
        """This process's full share of the current epoch, before skipping ``start``."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
            order = torch.randperm(self.num_samples, generator=generator).tolist()
        else:
            order = list(range(self.num_samples))
        total = self.per_rank * self.world_size
        step = self.world_size * self.batch_size
        if self.repeats > 1:
            # The epoch keeps its length: about total / repeats distinct images, each `repeats` times.
            order = _repeated_order(order, self.repeats, total)
            order = [x for chunk in range(0, total, step) for x in _spread(order[chunk : chunk + step], self.repeats)]
        # Pad by cycling (several times when there are fewer samples than processes) or truncate.
        order = (order * math.ceil(total / len(order)))[:total]
        if not self.drop_last:
            return order[self.rank : total : self.world_size]
        # Whole batches: of each global batch (world_size x batch_size consecutive samples of the permutation),
        # process r takes the r-th block. A global step then holds the same images, in the same order, whatever
        # the number of processes, so anything computed within a batch (SiT's pairs) does not depend on it.
        start = self.rank * self.batch_size
        return [i for chunk in range(0, total, step) for i in order[chunk + start : chunk + start + self.batch_size]]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.start :])

    def __len__(self) -> int:
        return self.per_rank - self.start
