"""EpochSampler: seeded per-epoch permutations, equal shards per rank, exact mid-epoch skipping."""

from __future__ import annotations

from collections import Counter

import pytest

from vitssl.data.loading.sampler import EpochSampler, samples_per_rank
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


def test_repeated_augmentation_repeats_each_image_within_its_global_batch() -> None:
    from vitssl.data.loading.sampler import decode_repeat

    n, repeats, batch = 60, 3, 6  # global batch 12 = 4 images x 3 copies
    shards = _shards(n, 2, batch_size=batch, repeats=repeats)
    assert len(shards[0]) == len(shards[1]) == samples_per_rank(n, 2, batch)  # the epoch keeps its length
    global_batches = [shards[0][s : s + batch] + shards[1][s : s + batch] for s in range(0, len(shards[0]), batch)]
    for step in global_batches:
        decoded = [decode_repeat(v, n) for v in step]
        counts = Counter(i for i, _ in decoded)
        assert set(counts.values()) == {repeats}  # every image three times in the same global step
        assert len(set(decoded)) == len(decoded)  # with three different copy numbers, hence different views
        # the copies are spread out: SiT's donor pairs (2k, 2k + 1) are never two copies of one image
        assert all(decoded[k][0] != decoded[k + 1][0] for k in range(0, len(decoded), 2))


def test_repeated_augmentation_keeps_the_global_batch_whatever_the_process_count() -> None:
    one = _shards(48, 1, batch_size=12, repeats=3)[0]
    four = _shards(48, 4, batch_size=3, repeats=3)
    rebuilt = [i for s in range(0, 12, 3) for r in range(4) for i in four[r][s : s + 3]]
    assert rebuilt == one


def test_repeats_one_is_the_plain_sampler_and_bad_repeats_are_refused() -> None:
    assert _shards(40, 2, batch_size=4, repeats=1) == _shards(40, 2, batch_size=4)
    with pytest.raises(ValueError, match="repeats"):
        EpochSampler(40, 0, repeats=0)
    with pytest.raises(ValueError, match="repeats"):
        EpochSampler(40, 0, repeats=3, drop_last=False)


def test_each_copy_has_its_own_view_seed_and_copy_zero_keeps_the_old_one() -> None:
    import torch

    from vitssl.data.loading.sampler import decode_repeat, encode_repeat
    from vitssl.data.seeding import derive_seed, sample_generator

    assert decode_repeat(encode_repeat(7, 2, 50), 50) == (7, 2) and decode_repeat(7, 50) == (7, 0)
    draws = [torch.rand(4, generator=sample_generator(1, 2, 7, repeat)) for repeat in range(3)]
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])
    old = torch.Generator().manual_seed(derive_seed(1, 2, 7))
    assert torch.equal(draws[0], torch.rand(4, generator=old))
