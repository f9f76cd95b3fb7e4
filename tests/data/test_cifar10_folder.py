"""The real CIFAR-10 image folders (needs VITSSL_TEST_DATA): discovery, capped subsets, caching, views."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from vitssl.data.loading.loader import build_loader
from vitssl.data.sources.folders import ImageFolderDataset
from vitssl.data.sources.named import resolve_dataset
from vitssl.data.views.multicrop import CIFAR10_MEAN, CIFAR10_STD, MultiCropTransform, dino_crops

pytestmark = pytest.mark.data

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_test_split_in_memory_is_quick_to_open_and_caches_on_read(cifar10_root: Path) -> None:
    start = time.perf_counter()
    dataset = ImageFolderDataset(cifar10_root / "test", labelled=True, cache="memory")
    elapsed = time.perf_counter() - start
    assert dataset.classes == CLASSES and len(dataset) == 10_000 and dataset.num_skipped == 0
    assert Counter(dataset.targets) == dict.fromkeys(range(10), 1000)
    assert dataset.image_cache is not None and dataset.image_cache.nbytes == 10_000 * 32 * 32 * 3
    assert dataset.image(123).size == (32, 32) and dataset.image_cache.is_filled(123)
    assert elapsed < 30, f"opening 10k CIFAR images took {elapsed:.1f}s"


def test_capped_subset_is_balanced(cifar10_root: Path) -> None:
    dataset = ImageFolderDataset(cifar10_root / "train", labelled=True, max_images=1000, subset_seed=0)
    assert Counter(dataset.targets) == dict.fromkeys(range(10), 100)


def test_resolves_as_labelled_folder_and_loads_views(cifar10_root: Path, tmp_path: Path) -> None:
    root, labelled = resolve_dataset(str(cifar10_root / "train"), "train", tmp_path)
    assert labelled
    transform = MultiCropTransform(dino_crops(32, local_count=6, local_size=16), CIFAR10_MEAN, CIFAR10_STD)
    dataset = ImageFolderDataset(root, labelled=True, transform=transform, max_images=64)
    batch = next(iter(build_loader(dataset, batch_size=16, num_workers=0, seed=0)))
    assert [tuple(v.shape) for v in batch.views] == [(16, 3, 32, 32)] * 2 + [(16, 3, 16, 16)] * 6
