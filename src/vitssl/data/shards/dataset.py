"""Training on WebDataset tar shards: an iterable dataset split exactly over processes and loader workers.

Where the data comes from (see :func:`load_shard_index`): a folder holding shards and one
``<prefix>-index.json`` written by ``vitssl shards``, that index file itself, or a brace pattern such as
``/data/train-{000000..000123}.tar`` (an index next to the shards gives their sizes; without one the tar
headers are read once at start).

How an epoch is split. The shards are put in an order drawn from (seed, epoch), and their samples, read in
that order, form the epoch's sequence of ``N`` samples. Process ``r`` of ``W`` takes the contiguous range
``[r * P, (r + 1) * P)`` of it, with ``P = floor(N / (W * B)) * B`` for batch size ``B``: every process gets
the same whole number of batches, and the last ``N - W * P`` samples of the sequence (fewer than ``W * B``;
which ones changes each epoch with the shard order) are dropped, as ``drop_last`` does for a map-style
loader. Within a process, the range is cut into one contiguous piece of whole batches per loader worker, so
the ``DataLoader`` batches never straddle workers. Each worker reads only the shards its piece overlaps
(seeking past the tar members before its piece in its first shard) and shuffles its piece with a buffer
seeded by (seed, epoch, rank, worker). Each sample is therefore seen exactly once per epoch over all
processes and workers. A sample's views are drawn from ``sample_generator(seed, epoch, index)``
(:mod:`vitssl.data.seeding`), ``index`` being its position in the dataset's fixed shard order, so they do
not depend on which process or worker builds them.

Resume. The order in which a process sees its samples is a function of (seed, epoch, rank, world size, batch
size, number of loader workers). A run resumed in the middle of an epoch (:meth:`ShardDataset.set_start`)
skips the batches it already consumed, reading but not decoding them, and continues exactly as the
interrupted run would have, provided those settings are unchanged. With a different number of loader workers
or processes the rest of that epoch has the right length but not the same samples (some may repeat, others
be missed, in that one epoch only); later epochs are unaffected.

Unreadable inputs (see :mod:`vitssl.data.bad_inputs`). An undecodable sample borrows a readable neighbour's
image (``on_bad_image="skip"``) or stops the run (``"error"``). A torn or unreadable shard stops the run with
one line (``on_bad_shard="error"``), or (``"skip"``) its samples that could not be read become stand-ins that
borrow a neighbour's image, so every process still yields its number of batches, as distributed training
needs. Either way the samples name what they stand in for in ``"bad_paths"``, for the main process to count.
"""

from __future__ import annotations

import io
import math
import random
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from vitssl.data.bad_inputs import ERROR, SKIP, check_policy, entry
from vitssl.data.images import IMAGE_EXTENSIONS, UnreadableImageError, to_rgb
from vitssl.data.loading.loader import collate_views
from vitssl.data.loading.workers import init_worker
from vitssl.data.seeding import derive_seed, sample_generator
from vitssl.data.shards.index import ShardIndex, is_shard_spec, load_shard_index, sample_members
from vitssl.data.sources.folders import ViewTransform
from vitssl.errors import VitsslError

__all__ = [
    "ShardDataset",
    "ShardIndex",
    "build_shard_dataset",
    "build_shard_loader",
    "is_shard_spec",
    "load_shard_index",
    "set_shard_loader_epoch",
]

_IMAGE_SUFFIXES = frozenset(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)
# A tag kept apart from the sample generators' (seed, epoch, index) and the sampler's (seed, epoch) seeds.
_SHUFFLE_TAG = 0x5348415244
DEFAULT_SHUFFLE_BUFFER = 1000
"""Samples each loader worker holds (still encoded) to shuffle its stream."""
_BLANK_SIDE = 64
_BLANK_GREY = (128, 128, 128)


class ShardReadError(VitsslError):
    """A shard could not be opened, or ended before the samples its index lists (a torn or partial copy).

    Attributes:
        reason: A short reason for the summary line, e.g. "torn at sample 17" or "cannot open".
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class _Encoded:
    """One sample as read from a shard, not decoded yet (what the shuffle buffer holds)."""

    index: int
    key: str
    data: bytes | None
    extension: str
    label: int
    shard: str
    bad_shard: str | None = None  # the entry of the torn shard this stand-in replaces a sample of


@dataclass(frozen=True)
class _WorkerPlan:
    """What one loader worker reads this epoch: ``(shard number, first, end)`` pieces, and what it skips."""

    slot: int
    pieces: list[tuple[int, int, int]]
    skip: int


def _read_samples(shard: Path, first: int, end: int) -> Iterator[tuple[int, str, dict[str, bytes]]]:
    """Samples ``first`` to ``end - 1`` of a shard as (position, key, {extension: bytes}).

    The tar is opened for random access, so the members of the samples before ``first`` are passed over by
    seeking past them (headers only are read), and reading stops at ``end``.
    """
    position, key = -1, None
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(shard, "r:*") as tar:
            for member_key, extension, member in sample_members(tar):
                if member_key != key:
                    if key is not None and position >= first:
                        yield position, key, files
                    position, key, files = position + 1, member_key, {}
                    if position >= end:
                        return
                if position >= first:
                    files[extension] = tar.extractfile(member).read()  # type: ignore[union-attr]  # regular file
    except (tarfile.TarError, OSError) as err:
        reason = f"torn at sample {position}" if position >= 0 else "cannot open"
        raise ShardReadError(
            f"cannot read shard {shard} ({err}); re-pack it with `vitssl shards`, or set data.on_bad_shard=skip to "
            "train on without it",
            reason,
        ) from err
    if key is not None and position >= first:
        yield position, key, files
    if position + 1 < end:
        raise ShardReadError(
            f"shard {shard} holds {position + 1} samples, fewer than its index lists; re-pack the images with "
            "`vitssl shards`, or set data.on_bad_shard=skip to train on without the missing ones",
            f"torn at sample {position + 1}",
        )


def _encoded(index: int, key: str, files: dict[str, bytes], shard: Path) -> _Encoded:
    extension = next((ext for ext in files if ext in _IMAGE_SUFFIXES), "")
    label = int(files["cls"].decode("ascii").strip()) if "cls" in files else -1
    return _Encoded(index, key, files.get(extension), extension, label, shard.name)


def _bad_sample_entry(sample: _Encoded) -> str:
    """The ``bad_paths`` entry of an undecodable sample (or of the shard a stand-in replaces a sample of)."""
    if sample.bad_shard is not None:
        return sample.bad_shard
    return entry(f"{sample.shard}/{sample.key}", "no image file" if sample.data is None else "cannot decode")


def _blank_image() -> Image.Image:
    """What a stand-in shows when its worker read no decodable image at all (only torn shards): mid-grey."""
    return Image.new("RGB", (_BLANK_SIDE, _BLANK_SIDE), _BLANK_GREY)


def _decode(sample: _Encoded) -> Image.Image:
    """The sample's image as RGB; raises UnreadableImageError naming the sample and its shard."""
    where = f"sample {sample.key!r} of shard {sample.shard}"
    if sample.data is None:
        raise UnreadableImageError(f"{where} holds no image file (looked for {', '.join(sorted(_IMAGE_SUFFIXES))})")
    try:
        with Image.open(io.BytesIO(sample.data)) as image:
            image.load()
            return to_rgb(image)
    except Exception as err:  # decoders of untrusted data raise many exception types
        raise UnreadableImageError(f"cannot decode {where} ({type(err).__name__}: {err}); re-pack it") from err


def _shuffled(items: Iterator[_Encoded], size: int, rng: random.Random) -> Iterator[_Encoded]:
    """A streaming shuffle: hold ``size`` items, emit a random one as each new item arrives."""
    buffer: list[_Encoded] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        pick = rng.randrange(size)
        buffer[pick], item = item, buffer[pick]
        yield item
    rng.shuffle(buffer)
    yield from buffer


def _batch_split(count: int, batch_size: int, parts: int) -> list[tuple[int, int]]:
    """Cut ``count`` samples into ``parts`` contiguous (start, end) pieces of whole batches, round-robin sized.

    Piece ``p`` gets the batches ``j`` with ``j % parts == p`` would get, in number: the DataLoader takes
    batches from workers in turn, so the earlier workers hold the one extra batch.
    """
    batches = math.ceil(count / batch_size)
    pieces, start = [], 0
    for part in range(parts):
        size = batches // parts + (1 if part < batches % parts else 0)
        end = min(start + size * batch_size, count)
        pieces.append((start, end))
        start = end
    return pieces


class ShardDataset(IterableDataset[dict[str, Any]]):
    """Samples of WebDataset shards as dicts of views, label, index, key and skipped count.

    See the module docstring for how an epoch is split over processes and workers and for resuming.

    Args:
        index: The shards (see :func:`load_shard_index`).
        transform: Called as ``transform(image, generator)`` with the RGB PIL image and the sample's generator;
            None yields the PIL image itself as ``"views"``.
        seed: Seed of the shard order, the shuffle buffers and the views.
        rank: This process's index in ``[0, world_size)``.
        world_size: Processes sharing the data.
        batch_size: Samples per batch per process; each process's share is cut into whole batches per worker.
        shuffle: Shuffle the shard order and each worker's stream (training); False reads in dataset order.
        shuffle_buffer: Samples each worker holds, still encoded, to shuffle its stream.
        drop_last: Give every process the same whole number of batches, dropping fewer than
            ``world_size * batch_size`` samples per epoch; False splits all samples, possibly unevenly by one.
        on_bad_image: An undecodable sample: "skip" (a neighbour's image stands in) or "error".
        on_bad_shard: A torn or unreadable shard: "error" (the default) or "skip" (stand-ins for its samples).

    Attributes:
        index, transform, seed, rank, world_size, batch_size, shuffle, shuffle_buffer, drop_last, on_bad_image,
            on_bad_shard: As given.
        classes: Class names from the index (may be empty).
        epoch, start: Set by :meth:`set_epoch` and :meth:`set_start`.
        num_skipped: Undecodable samples met so far by this process (not counting those in its workers).

    Raises:
        VitsslError: With ``drop_last``, fewer samples than one batch on every process.
    """

    def __init__(
        self,
        index: ShardIndex,
        transform: ViewTransform | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        batch_size: int = 1,
        shuffle: bool = True,
        shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
        drop_last: bool = True,
        on_bad_image: str = SKIP,
        on_bad_shard: str = ERROR,
    ) -> None:
        self.on_bad_image = check_policy(on_bad_image, "data.on_bad_image")
        self.on_bad_shard = check_policy(on_bad_shard, "data.on_bad_shard")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        if batch_size < 1 or shuffle_buffer < 0:
            raise ValueError(f"need batch_size >= 1 and shuffle_buffer >= 0, got {batch_size} and {shuffle_buffer}")
        self.index = index
        self.classes = index.classes
        self.transform = transform
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.shuffle_buffer = shuffle_buffer
        self.drop_last = drop_last
        self.epoch = 0
        self.start = 0
        self.num_skipped = 0
        self.check_batch_size(batch_size)

    # -- sizes --------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Samples in the whole dataset (all processes), from the index, as for a map-style dataset."""
        return self.index.num_samples

    def rank_range(self, rank: int | None = None) -> tuple[int, int]:
        """The (start, end) positions of a process's share in the epoch's sample sequence."""
        rank = self.rank if rank is None else rank
        total, world = self.index.num_samples, self.world_size
        if self.drop_last:
            share = total // (world * self.batch_size) * self.batch_size
            return rank * share, (rank + 1) * share
        return rank * total // world, (rank + 1) * total // world

    @property
    def samples_per_rank(self) -> int:
        """Samples this process yields in a full epoch."""
        start, end = self.rank_range()
        return end - start

    def batches_per_epoch(self) -> int:
        """Batches this process yields in a full epoch (the same on every process with ``drop_last``)."""
        return math.ceil(self.samples_per_rank / self.batch_size)

    def check_batch_size(self, batch_size: int) -> None:
        """Raise VitsslError when, with ``drop_last``, a batch of ``batch_size`` does not fit every process."""
        if self.drop_last and self.index.num_samples < batch_size * self.world_size:
            raise VitsslError(
                f"the shards hold {self.index.num_samples} samples, fewer than one batch of {batch_size} on each "
                f"of {self.world_size} process(es); lower data.batch_size or use more images"
            )

    # -- epoch and resume ---------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (shard order, shuffles and views); also resets :meth:`set_start` to 0."""
        self.epoch = epoch
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` samples of this process's share of the current epoch (mid-epoch resume).

        Args:
            start: Samples already consumed by this process this epoch: a whole number of batches.
        """
        if not 0 <= start <= self.samples_per_rank or start % self.batch_size:
            raise ValueError(
                f"start {start} is not a whole number of batches of {self.batch_size} within this epoch's "
                f"{self.samples_per_rank} samples per process"
            )
        self.start = start

    # -- the split ------------------------------------------------------------------------------------------
    def shard_order(self) -> list[int]:
        """The epoch's order of shard numbers (drawn from (seed, epoch); the index order without shuffle)."""
        if not self.shuffle:
            return list(range(len(self.index.shards)))
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        return torch.randperm(len(self.index.shards), generator=generator).tolist()

    def worker_plan(self, worker: int, num_workers: int) -> _WorkerPlan:
        """What loader worker ``worker`` of ``num_workers`` reads this epoch, and how much of it it skips.

        Worker ``w`` plays slot ``(w + b) % num_workers``, ``b`` being the batches skipped by
        :meth:`set_start`: the loader takes batches from workers in turn starting at worker 0, so rotating the
        slots makes a resumed loader continue the interrupted one's batch sequence.
        """
        skipped_batches = self.start // self.batch_size
        slot = (worker + skipped_batches) % num_workers
        rank_start, rank_end = self.rank_range()
        first, end = _batch_split(rank_end - rank_start, self.batch_size, num_workers)[slot]
        already = skipped_batches // num_workers + (1 if slot < skipped_batches % num_workers else 0)
        skip = min(already * self.batch_size, end - first)
        return _WorkerPlan(slot, self._pieces(rank_start + first, rank_start + end), skip)

    def _pieces(self, first: int, end: int) -> list[tuple[int, int, int]]:
        """The (shard number, first, end) sample ranges covering positions [first, end) of the epoch sequence."""
        pieces, position = [], 0
        for shard in self.shard_order():
            count = self.index.counts[shard]
            low, high = max(first, position), min(end, position + count)
            if low < high:
                pieces.append((shard, low - position, high - position))
            position += count
        return pieces

    # -- iteration ------------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.worker_samples(worker, num_workers)

    def worker_samples(self, worker: int, num_workers: int) -> Iterator[dict[str, Any]]:
        """The samples loader worker ``worker`` of ``num_workers`` yields this epoch (what ``__iter__`` uses)."""
        plan = self.worker_plan(worker, num_workers)
        stream = self._encoded_stream(plan)
        if self.shuffle and self.shuffle_buffer > 1:
            rng = random.Random(derive_seed(self.seed, self.epoch, self.rank, plan.slot, _SHUFFLE_TAG))
            stream = _shuffled(stream, self.shuffle_buffer, rng)
        for _ in range(plan.skip):
            next(stream, None)  # consumed batches of a resumed epoch: read, never decoded
        return self._samples(stream)

    def _encoded_stream(self, plan: _WorkerPlan) -> Iterator[_Encoded]:
        for shard, first, end in plan.pieces:
            yield from self._shard_stream(shard, first, end)

    def _shard_stream(self, shard: int, first: int, end: int) -> Iterator[_Encoded]:
        """Samples ``first`` to ``end - 1`` of one shard; with ``on_bad_shard="skip"``, those a torn or unreadable
        shard could not give are stand-ins (no data, ``bad_shard`` set), one per missing position."""
        path, offset = self.index.shards[shard], self.index.offsets[shard]
        missing = first  # the first position not yielded yet
        try:
            for position, key, files in _read_samples(path, first, end):
                yield _encoded(offset + position, key, files, path)
                missing = position + 1
        except ShardReadError as err:
            if self.on_bad_shard == ERROR:
                raise
            bad_shard = entry(path, err.reason)
            for position in range(missing, end):
                yield _Encoded(offset + position, f"{path.name}#{position}", None, "", -1, path.name, bad_shard)

    def _samples(self, stream: Iterator[_Encoded]) -> Iterator[dict[str, Any]]:
        """Decode and transform; an undecodable sample (or a torn shard's stand-in) borrows a readable
        neighbour's image and label, keeping its own index.

        Keeping every sample (rather than dropping the bad one) keeps the batch counts equal on all processes,
        and the bad sample's own generator keeps the views of every other sample unchanged.
        """
        pending: list[_Encoded] = []
        last: tuple[Image.Image, int] | None = None
        for sample in stream:
            image = self._decode_or_none(sample)
            if image is None:
                pending.append(sample)
                continue
            last = (image, sample.label)
            for bad in pending:
                yield self._sample(bad, *last, skipped=1)
            pending.clear()
            yield self._sample(sample, *last, skipped=0)
        if pending and last is None:
            last = self._no_neighbour(pending)
        for bad in pending:
            yield self._sample(bad, *last, skipped=1)  # type: ignore[misc]  # last is set when pending remains

    def _decode_or_none(self, sample: _Encoded) -> Image.Image | None:
        """The sample's image; None for a stand-in or (skipping) an undecodable sample, which is counted."""
        if sample.bad_shard is not None:
            self.num_skipped += 1
            return None
        try:
            return _decode(sample)
        except UnreadableImageError:
            if self.on_bad_image == ERROR:
                raise
            self.num_skipped += 1
            return None

    def _no_neighbour(self, pending: list[_Encoded]) -> tuple[Image.Image, int]:
        """What the samples of a worker that decoded no image borrow: a blank image when torn shards (skipped
        by policy) are to blame, else a one-line error (every image the worker read is undecodable)."""
        if any(sample.bad_shard is not None for sample in pending):
            return _blank_image(), -1
        raise VitsslError(
            f"none of the {len(pending)} samples this worker read from {self.index.spec} could be decoded; "
            "re-pack the images with `vitssl shards`"
        )

    def _sample(self, sample: _Encoded, image: Image.Image, label: int, skipped: int) -> dict[str, Any]:
        views: Any = image
        if self.transform is not None:
            views = self.transform(image, sample_generator(self.seed, self.epoch, sample.index))
        bad_paths = (_bad_sample_entry(sample),) if skipped else ()
        return {
            "views": views,
            "label": label,
            "index": sample.index,
            "key": sample.key,
            "skipped": skipped,
            "bad_paths": bad_paths,
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.index.spec!r}, {len(self.index.shards)} shards, {len(self)} samples, "
            f"rank {self.rank}/{self.world_size}, {self.batches_per_epoch()} batches of {self.batch_size} per epoch)"
        )


def build_shard_dataset(
    spec: str,
    transform: ViewTransform | None,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    batch_size: int = 1,
    shuffle: bool = True,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
    drop_last: bool = True,
    config_key: str = "data.train",
    on_bad_image: str = SKIP,
    on_bad_shard: str = ERROR,
) -> ShardDataset:
    """A :class:`ShardDataset` over the shards named by ``spec`` (see :func:`load_shard_index`).

    Args:
        spec: Folder of shards with an index, index file, or brace pattern.
        transform: The view transform, called as ``transform(image, generator)``.
        seed: The data seed (shard order, shuffle buffers, views).
        rank: This process's index.
        world_size: Number of processes.
        batch_size: Samples per batch per process (the loader's batch size).
        shuffle: Shuffle (training) or read in dataset order.
        shuffle_buffer: Encoded samples each loader worker holds for shuffling.
        drop_last: Equal whole batches on every process (see :class:`ShardDataset`).
        config_key: The config key that gave ``spec``, quoted in error messages.
        on_bad_image: An undecodable sample: "skip" or "error" (see :class:`ShardDataset`).
        on_bad_shard: A torn or unreadable shard: "error" or "skip" (see :class:`ShardDataset`).

    Raises:
        VitsslError: The shards cannot be found or read, or hold less than one batch per process.
    """
    return ShardDataset(
        load_shard_index(spec, config_key),
        transform=transform,
        seed=seed,
        rank=rank,
        world_size=world_size,
        batch_size=batch_size,
        shuffle=shuffle,
        shuffle_buffer=shuffle_buffer,
        drop_last=drop_last,
        on_bad_image=on_bad_image,
        on_bad_shard=on_bad_shard,
    )


def build_shard_loader(
    dataset: ShardDataset,
    batch_size: int,
    num_workers: int,
    epoch: int = 0,
    start: int = 0,
    pin_memory: bool = False,
    collate_fn: Callable[[Sequence[dict[str, Any]]], Any] = collate_views,
) -> DataLoader[dict[str, Any]]:
    """A ``DataLoader`` over a :class:`ShardDataset`, set to ``epoch`` and skipping ``start`` samples.

    Yields :meth:`ShardDataset.batches_per_epoch` batches per epoch on this process. Workers are not
    persistent, so each epoch's workers see the epoch set by :func:`set_shard_loader_epoch` before iterating.

    Args:
        dataset: The shard dataset; its ``batch_size`` is set to ``batch_size``.
        batch_size: Samples per batch in this process.
        num_workers: Loader worker processes (0 reads in the main process).
        epoch: The epoch to start in.
        start: Samples of this epoch already consumed by this process (a whole number of batches).
        pin_memory: Pin batches in page-locked memory for faster copies to an accelerator.
        collate_fn: Turns a list of samples into a batch.

    Raises:
        VitsslError: A batch of ``batch_size`` does not fit every process.
    """
    dataset.check_batch_size(batch_size)
    dataset.batch_size = batch_size
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        drop_last=False,  # each worker's piece is already whole batches (the last one aside without drop_last)
        persistent_workers=False,
        worker_init_fn=init_worker if num_workers > 0 else None,
    )
    set_shard_loader_epoch(loader, epoch, start)
    return loader


def set_shard_loader_epoch(loader: DataLoader[dict[str, Any]], epoch: int, start: int = 0) -> None:
    """Point a loader from :func:`build_shard_loader` at ``epoch``, skipping its first ``start`` samples."""
    dataset = loader.dataset
    if not isinstance(dataset, ShardDataset):
        raise TypeError("set_shard_loader_epoch needs a loader made by build_shard_loader (over a ShardDataset)")
    dataset.set_epoch(epoch)
    dataset.set_start(start)
