"""ImageFolderDataset: discovery, clear errors, bad files, subsets, caching and per-sample determinism."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch

from vitssl.data.sources.folders import ImageFolderDataset
from vitssl.data.views.multicrop import CIFAR10_MEAN, CIFAR10_STD, MultiCropTransform, dino_crops
from vitssl.errors import VitsslError


def _relative(dataset: ImageFolderDataset) -> list[str]:
    return [path.relative_to(dataset.root).as_posix() for path in dataset.paths]


def _transform() -> MultiCropTransform:
    return MultiCropTransform(dino_crops(16, local_count=2, local_size=8), CIFAR10_MEAN, CIFAR10_STD)


def test_labelled_discovery_with_nesting(labelled_folder: Path) -> None:
    dataset = ImageFolderDataset(labelled_folder, labelled=True)
    assert dataset.classes == ["cat", "dog"]
    assert _relative(dataset) == [
        "cat/0.png",
        "cat/1.png",
        "cat/2.png",
        "cat/3.png",
        "dog/a.jpg",
        "dog/c.bmp",
        "dog/deep/er/b.JPEG",
    ]
    assert dataset.targets == [0, 0, 0, 0, 1, 1, 1]
    sample = dataset[5]
    assert sample["label"] == 1 and sample["index"] == 5 and sample["skipped"] == 0
    assert sample["views"].mode == "RGB"
    assert dataset.image(0).mode == "RGB"


def test_unlabelled_discovery_finds_everything_below_root(labelled_folder: Path) -> None:
    dataset = ImageFolderDataset(labelled_folder, labelled=False)
    assert dataset.classes == []
    assert len(dataset) == 7 and set(dataset.targets) == {-1}
    assert _relative(dataset) == sorted(_relative(dataset))
    assert dataset[0]["label"] == -1


def test_labelled_folder_without_class_folders_suggests_unlabelled(tmp_path: Path, make_image) -> None:
    make_image(tmp_path / "flat" / "a.png", seed=0)
    with pytest.raises(VitsslError, match="no class sub-folders.*unlabelled"):
        ImageFolderDataset(tmp_path / "flat", labelled=True)
    assert len(ImageFolderDataset(tmp_path / "flat", labelled=False)) == 1


def test_loose_images_in_labelled_root_are_ignored_with_warning(labelled_folder: Path, make_image) -> None:
    make_image(labelled_folder / "loose.png", seed=0)
    with pytest.warns(UserWarning, match="ignoring 1 image"):
        dataset = ImageFolderDataset(labelled_folder, labelled=True)
    assert len(dataset) == 7


def test_missing_folder_error(tmp_path: Path) -> None:
    with pytest.raises(VitsslError, match=r"nowhere does not exist; point data.train at a folder of images"):
        ImageFolderDataset(tmp_path / "nowhere", labelled=False)


@pytest.mark.filterwarnings("ignore:class folder .* holds no images")
@pytest.mark.parametrize("labelled", [True, False])
def test_empty_folder_error(tmp_path: Path, labelled: bool) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "readme.txt").write_text("no images here")
    with pytest.raises(VitsslError, match=r"no images found under .*empty \(looked for .*\.jpg.*\.png") as info:
        ImageFolderDataset(tmp_path / "empty", labelled=labelled)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("cache", ["memory", "none"])
def test_folder_of_only_bad_files_error(tmp_path: Path, make_corrupt, cache: str) -> None:
    make_corrupt(tmp_path / "bad" / "x" / "a.jpg", "garbage")
    make_corrupt(tmp_path / "bad" / "x" / "b.png", "text")
    with pytest.raises(VitsslError, match="no readable images found"):
        ImageFolderDataset(tmp_path / "bad", labelled=True, cache=cache)


def test_bad_cache_mode_error(labelled_folder: Path) -> None:
    with pytest.raises(VitsslError, match="data.cache must be one of auto, memory, none"):
        ImageFolderDataset(labelled_folder, labelled=True, cache="disk")


@pytest.mark.parametrize("cache", ["memory", "none"])
def test_next_readable_image_stands_in_for_a_bad_file(corrupt_folder: Path, cache: str) -> None:
    # Cached or not, bad files count in the length and are found on access (memory mode used to drop them).
    dataset = ImageFolderDataset(corrupt_folder, labelled=True, cache=cache)
    assert dataset.cache_mode == cache and len(dataset) == 8
    names = [path.name for path in dataset.paths]
    bad_a, bad_b = names.index("1x.jpg"), names.index("2x.png")
    sample = dataset[bad_a]
    assert sample["skipped"] == 1 and sample["index"] == bad_a and sample["label"] == 0
    assert sample["bad_paths"] == (f"{dataset.paths[bad_a]} (cannot decode)",)
    assert sample["views"].tobytes() == dataset.image(bad_a + 1).tobytes()
    last = dataset[bad_b]
    assert last["skipped"] == 1 and last["label"] == 0  # wrapped around to the first image
    assert last["bad_paths"] == (f"{dataset.paths[bad_b]} (cannot decode)",)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a known-bad file is not decoded again, but still named by its sample
        assert dataset[bad_a]["skipped"] == 1 and dataset[bad_a]["bad_paths"] == sample["bad_paths"]
    assert dataset.num_skipped == 2


def test_auto_cache_picks_memory_for_small_folders(labelled_folder: Path) -> None:
    assert ImageFolderDataset(labelled_folder, labelled=True).cache_mode == "memory"


def test_memory_and_lazy_give_identical_views(labelled_folder: Path) -> None:
    memory = ImageFolderDataset(labelled_folder, labelled=True, transform=_transform(), cache="memory", seed=3)
    lazy = ImageFolderDataset(labelled_folder, labelled=True, transform=_transform(), cache="none", seed=3)
    for _ in range(2):  # images decoded from their files, then served from the cache
        for i in range(len(memory)):
            for a, b in zip(memory[i]["views"], lazy[i]["views"], strict=True):
                assert torch.equal(a, b)


def test_views_depend_only_on_seed_epoch_index(labelled_folder: Path) -> None:
    dataset = ImageFolderDataset(labelled_folder, labelled=True, transform=_transform(), seed=7)
    first = dataset[2]["views"]
    dataset[5]  # drawing other samples in between must not matter
    again = dataset[2]["views"]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    dataset.set_epoch(1)
    next_epoch = dataset[2]["views"]
    assert not torch.equal(first[0], next_epoch[0])
    dataset.set_epoch(0)
    dataset.seed = 8
    assert not torch.equal(first[0], dataset[2]["views"][0])


def test_stratified_max_images(tmp_path: Path, make_image) -> None:
    for cls, count in (("a", 10), ("b", 10), ("c", 2)):
        for i in range(count):
            make_image(tmp_path / "s" / cls / f"{i}.png", seed=i, size=(4, 4))
    subset = ImageFolderDataset(tmp_path / "s", labelled=True, max_images=12, subset_seed=0)
    assert Counter(subset.targets) == {0: 5, 1: 5, 2: 2}
    assert subset.classes == ["a", "b", "c"]
    same = ImageFolderDataset(tmp_path / "s", labelled=True, max_images=12, subset_seed=0)
    assert same.paths == subset.paths
    other = ImageFolderDataset(tmp_path / "s", labelled=True, max_images=12, subset_seed=1)
    assert other.paths != subset.paths and Counter(other.targets) == Counter(subset.targets)
    uneven = ImageFolderDataset(tmp_path / "s", labelled=True, max_images=7)
    assert sorted(Counter(uneven.targets).values()) == [2, 2, 3]
    unlabelled = ImageFolderDataset(tmp_path / "s", labelled=False, max_images=5)
    assert len(unlabelled) == 5
    everything = ImageFolderDataset(tmp_path / "s", labelled=True, max_images=100)
    assert len(everything) == 22
