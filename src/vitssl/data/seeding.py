"""Stable per-sample seeds for the data pipeline.

Every random choice the data pipeline makes (crop boxes, flips, jitter, subsets, shuffles) is drawn from a
generator seeded by (run seed, epoch, sample index). The views of a sample therefore do not depend on which
loader worker or which process builds them, nor on what was drawn before, so a run resumed mid-epoch sees
exactly the views it would have seen without the interruption (DINO, Caron et al. 2021, arXiv 2104.14294,
draws its multi-crop views from global RNG state instead, which ties them to the worker layout).
"""

from __future__ import annotations

import hashlib

import torch

__all__ = ["derive_seed", "sample_generator"]

# A fixed tag keeps these seeds apart from any other blake2b use of the same integers.
_PERSONALISATION = b"vitssl-seed-v1"
_PART_BYTES = 16


def derive_seed(*parts: int) -> int:
    """Derive a stable 63-bit seed from a sequence of integers.

    Uses blake2b over the fixed-width encoding of the integers, so the result is the same on every platform,
    Python version and process (unlike ``hash()``, which is salted per process for some types), and nearby
    inputs such as (seed, epoch, 7) and (seed, epoch, 8) give unrelated seeds.

    Args:
        *parts: Integers (negative allowed) with absolute value below 2**127.

    Returns:
        An integer in [0, 2**63), valid for ``torch.Generator.manual_seed`` and ``numpy.random.default_rng``.
    """
    digest = hashlib.blake2b(digest_size=8, person=_PERSONALISATION)
    for part in parts:
        digest.update(int(part).to_bytes(_PART_BYTES, "little", signed=True))
    return int.from_bytes(digest.digest(), "little") >> 1


def sample_generator(seed: int, epoch: int, index: int, repeat: int = 0) -> torch.Generator:
    """A CPU ``torch.Generator`` for one sample of one epoch, seeded with ``derive_seed(seed, epoch, index)``, or
    ``derive_seed(seed, epoch, index, repeat)`` for the further copies of repeated augmentation.

    Args:
        seed: The run's data seed.
        epoch: The epoch (0-based).
        index: The sample's index in the dataset.
        repeat: Which copy of the sample this epoch (repeated augmentation, :mod:`vitssl.data.loading.sampler`); copy 0
            keeps the seed it has without repeats, so turning the option on changes no other view.

    Returns:
        A freshly seeded generator; drawing from it never touches the global RNG.
    """
    generator = torch.Generator()
    parts = (seed, epoch, index) if repeat == 0 else (seed, epoch, index, repeat)
    generator.manual_seed(derive_seed(*parts))
    return generator
