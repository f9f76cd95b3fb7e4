"""EpochSampler: seeded per-epoch permutations, equal shards per rank, exact mid-epoch skipping."""

from __future__ import annotations

from collections import Counter

import pytest

from vitssl.data.sampler import EpochSampler, samples_per_rank
from vitssl.errors import VitsslError


def _shards(num_samples: int, world_size: int, **kwargs) -> list[list[int]]:
    return [list(EpochSampler(num_samples, 5, rank=r, world_size=world_size, **kwargs)) for r in range(world_size)]


def test_two_ranks_cover_every_index_exactly_once() -> None:
    shards = _shards(10, 2, drop_last=False)
    assert len(shards[0]) == len(shards[1]) == 5
    assert sorted(shards[0] + shards[1]) == list(range(10))


def test_uneven_without_drop_last_pads_to_equal_counts() -> None:
    shards = _shards(11, 2, drop_last=False)
    assert len(shards[0]) == len(shards[1]) == 6
    counts = Counter(shards[0] + shards[1])
    assert set(counts) == set(range(11)) and sorted(counts.values()) == [1] * 10 + [2]


def test_drop_last_gives_whole_batches_and_disjoint_shards() -> None:
    shards = _shards(37, 2, drop_last=True, batch_size=4)
    assert len(shards[0]) == len(shards[1]) == 16 == samples_per_rank(37, 2, 4, True)
    assert not set(shards[0]) & set(shards[1])
    assert EpochSampler(37, 0, world_size=2, batch_size=4).batches_per_epoch() == 4


def test_permutation_depends_on_seed_and_epoch_only() -> None:
    sampler = EpochSampler(50, seed=1)
    epoch0 = list(sampler)
    assert list(EpochSampler(50, seed=1)) == epoch0
    assert sorted(epoch0) == list(range(50)) and epoch0 != list(range(50))
    sampler.set_epoch(1)
    assert list(sampler) != epoch0
    assert list(EpochSampler(50, seed=2)) != epoch0


def test_no_shuffle_keeps_order() -> None:
    assert list(EpochSampler(7, 0, shuffle=False, drop_last=False)) == list(range(7))


def test_set_start_skips_exactly_and_len_follows() -> None:
    sampler = EpochSampler(40, seed=3, rank=1, world_size=2, batch_size=4)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_start(8)
    assert list(sampler) == full[8:]
    assert len(sampler) == len(full) - 8
    sampler.set_epoch(3)  # a new epoch starts from its beginning
    assert len(sampler) == len(full) and sampler.start == 0
    with pytest.raises(ValueError):
        sampler.set_start(len(full) + 1)


def test_too_few_samples_for_one_batch_is_a_clear_error() -> None:
    with pytest.raises(VitsslError, match="fewer than one batch.*lower data.batch_size"):
        EpochSampler(5, 0, world_size=2, batch_size=4)
