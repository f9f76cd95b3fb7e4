"""The lazy in-memory image cache: header sizing, slots filled on first read and shared with loader workers,
identical pixels with and without it, unreadable files, and the "auto" rule."""

from __future__ import annotations

import warnings
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitssl.data.images import load_rgb
from vitssl.data.sources import cache, folders
from vitssl.data.sources.discovery import find_images
from vitssl.data.sources.folders import ImageFolderDataset
from vitssl.data.views.multicrop import CIFAR10_MEAN, CIFAR10_STD, MultiCropTransform, dino_crops
from vitssl.errors import VitsslError


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Make ``folders.load_rgb`` record the files it decodes (in this process) and return that record."""
    decoded: list[Path] = []

    def counting(path: Path) -> Image.Image:
        decoded.append(Path(path))
        return load_rgb(path)

    monkeypatch.setattr(folders, "load_rgb", counting)
    return decoded


def _pixels(dataset: ImageFolderDataset) -> list[np.ndarray]:
    return [np.asarray(dataset.image(i)) for i in range(len(dataset))]


def _views(dataset: ImageFolderDataset) -> list[list[torch.Tensor]]:
    return [dataset[i]["views"] for i in range(len(dataset))]


def _transform() -> MultiCropTransform:
    return MultiCropTransform(dino_crops(16, local_count=2, local_size=8), CIFAR10_MEAN, CIFAR10_STD)


@pytest.mark.parametrize("workers", [1, 2])
def test_sizes_come_from_headers(
    tmp_path: Path, make_image, make_corrupt, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    for i in range(9):
        make_image(tmp_path / f"{i}.png", seed=i, size=(3 + i, 5 + 2 * i))  # sizes differ per image
    make_image(tmp_path / "9.jpg", seed=9, size=(7, 4))
    make_corrupt(tmp_path / "4x.png", "garbage")
    paths = find_images(tmp_path)
    monkeypatch.setattr(cache, "_CHUNK", 4)  # several tasks for the process pool
    sizes = cache.read_image_sizes(paths, num_workers=workers)
    for path, size in zip(paths, sizes, strict=True):
        expected = (0, 0) if path.name == "4x.png" else np.asarray(load_rgb(path)).shape[:2]
        assert tuple(size) == tuple(expected), path.name


def test_slots_keep_exact_pixels_and_refuse_what_does_not_fit() -> None:
    rng = np.random.default_rng(0)
    store = cache.ImageCache(np.array([[2, 3], [4, 1], [0, 0]]))
    assert len(store) == 3 and store.nbytes == (6 + 4) * 3 and store.num_filled == 0
    assert store.image(0) is None
    pixels = rng.integers(0, 256, (2, 3, 3), dtype=np.uint8)
    assert store.store(0, Image.fromarray(pixels))
    assert store.is_filled(0) and np.array_equal(np.asarray(store.image(0)), pixels)
    assert not store.store(1, Image.fromarray(pixels))  # decoded size differs from the header's
    assert not store.store(1, Image.fromarray(rng.integers(0, 256, (4, 1), dtype=np.uint8)))  # not RGB
    assert not store.store(2, Image.fromarray(pixels))  # unreadable header: a slot of size 0
    assert store.num_filled == 1 and not store.is_filled(1) and not store.is_filled(2)
    served = store.image(0)
    served.paste((0, 0, 0), (0, 0, 3, 2))  # a transform writing into its image must not reach the cache
    assert np.array_equal(np.asarray(store.image(0)), pixels)


def test_pickled_cache_shares_its_memory() -> None:
    # Spawned loader workers receive the dataset pickled this way: they must write into the same memory.
    store = cache.ImageCache(np.array([[1, 2]]))
    copy = ForkingPickler.loads(bytes(ForkingPickler.dumps(store)))
    pixels = np.arange(6, dtype=np.uint8).reshape(1, 2, 3)
    assert copy.store(0, Image.fromarray(pixels))
    assert store.is_filled(0) and np.array_equal(np.asarray(store.image(0)), pixels)


def test_construction_decodes_only_the_probe_image(labelled_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decoded = _count_decodes(monkeypatch)
    dataset = ImageFolderDataset(labelled_folder, labelled=True, cache="memory")
    assert dataset.cache_mode == "memory" and dataset.image_cache is not None
    # One decode checks that the folder is readable at all (as uncached datasets do); that image is kept.
    assert decoded == [dataset.paths[0]]
    assert dataset.image_cache.num_filled == 1 and dataset.image_cache.is_filled(0)


def test_workers_fill_the_cache_for_later_passes(labelled_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uncached = ImageFolderDataset(labelled_folder, labelled=True, transform=_transform(), cache="none", seed=3)
    dataset = ImageFolderDataset(labelled_folder, labelled=True, transform=_transform(), cache="memory", seed=3)
    assert dataset.image_cache is not None
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=2, num_workers=2, multiprocessing_context="fork", collate_fn=list
    )
    first = [sample["views"] for batch in loader for sample in batch]
    assert dataset.image_cache.num_filled == len(dataset)  # written by the workers, seen here
    decoded = _count_decodes(monkeypatch)
    second = _views(dataset)
    assert decoded == []
    expected = _views(uncached)
    for a, b, c in zip(first, second, expected, strict=True):
        assert all(torch.equal(x, y) and torch.equal(x, z) for x, y, z in zip(a, b, c, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(_pixels(dataset), _pixels(uncached), strict=True))


@pytest.mark.parametrize("cache_mode", ["memory", "none"])
def test_an_unreadable_file_counts_and_the_next_image_stands_in(
    tmp_path: Path, make_image, make_corrupt, cache_mode: str
) -> None:
    for i in range(3):
        make_image(tmp_path / "a" / f"{i}.png", seed=i)
    make_corrupt(tmp_path / "a" / "1x.png", "garbage")  # unreadable header too: an empty slot
    dataset = ImageFolderDataset(tmp_path, labelled=True, cache=cache_mode)
    assert dataset.cache_mode == cache_mode and len(dataset) == 4
    bad = [path.name for path in dataset.paths].index("1x.png")
    sample = dataset[bad]
    assert sample["bad_paths"] == (f"{dataset.paths[bad]} (cannot decode)",)
    assert sample["skipped"] == 1 and sample["index"] == bad and dataset.num_skipped == 1
    assert np.array_equal(np.asarray(sample["views"]), np.asarray(load_rgb(dataset.paths[bad + 1])))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a known-bad file is not decoded again
        assert dataset[bad]["skipped"] == 1
    if dataset.image_cache is not None:
        assert not dataset.image_cache.is_filled(bad) and dataset.image_cache.is_filled(bad + 1)


def test_shared_memory_that_cannot_be_reserved(labelled_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(size: int) -> torch.Tensor:
        raise VitsslError("cannot reserve 1 MiB of shared memory for the image cache (full)")

    monkeypatch.setattr(cache, "_shared_bytes", refuse)
    with pytest.raises(VitsslError, match="cannot reserve"):
        ImageFolderDataset(labelled_folder, labelled=True, cache="memory")
    with pytest.warns(UserWarning, match="not caching images in memory"):
        dataset = ImageFolderDataset(labelled_folder, labelled=True, cache="auto")
    assert dataset.cache_mode == "none" and dataset.image_cache is None


def test_auto_cache_rule(tmp_path: Path, make_image, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = [make_image(tmp_path / f"{i}.png", seed=i) for i in range(3)]
    assert cache.choose_cache_mode(paths, "auto") == "memory"
    assert cache.choose_cache_mode(paths, "none") == "none"
    monkeypatch.setattr(cache, "AUTO_MAX_IMAGES", 2)
    assert cache.choose_cache_mode(paths, "auto") == "none"
    monkeypatch.setattr(cache, "AUTO_MAX_IMAGES", 10)
    monkeypatch.setattr(cache, "AUTO_MAX_FILE_BYTES", 10)
    assert cache.choose_cache_mode(paths, "auto") == "none"
    monkeypatch.setattr(cache, "AUTO_MAX_FILE_BYTES", 10**9)
    monkeypatch.setattr(cache, "AUTO_MAX_DECODED_BYTES", 100)  # 3 x (12 x 10 x 3) bytes decoded
    assert cache.choose_cache_mode(paths, "auto") == "none"
