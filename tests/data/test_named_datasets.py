"""resolve_dataset: named datasets, split conventions, folder layouts and offline failure messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.error import URLError

import numpy as np
import pytest
import torchvision.datasets

from vitssl.data.sources import named
from vitssl.data.sources.folders import ImageFolderDataset
from vitssl.data.sources.named import ensure_cifar10_folders, resolve_dataset
from vitssl.errors import VitsslError


@pytest.fixture
def fake_synthetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make ensure_synthetic return a fixed root instead of generating 4000 images."""
    root = tmp_path / "synthetic-root"
    monkeypatch.setattr(named, "ensure_synthetic", lambda cache_dir: root)
    return root


@pytest.mark.parametrize(
    ("spec", "role", "split"),
    [
        ("synthetic", "train", "train"),
        ("synthetic", "val", "test"),
        ("synthetic:test", "train", "test"),
        ("synthetic:train", "val", "train"),
    ],
)
def test_synthetic_split_convention(fake_synthetic: Path, tmp_path: Path, spec: str, role: str, split: str) -> None:
    assert resolve_dataset(spec, role, tmp_path) == (fake_synthetic / split, True)


def test_unknown_split_of_named_dataset(fake_synthetic: Path, tmp_path: Path) -> None:
    with pytest.raises(VitsslError, match="unknown split 'val'; use synthetic:train or synthetic:test"):
        resolve_dataset("synthetic:val", "train", tmp_path)


def test_unknown_name_lists_named_datasets(tmp_path: Path) -> None:
    with pytest.raises(VitsslError, match="imagenet9 is neither a named dataset.*synthetic, cifar10"):
        resolve_dataset("imagenet9", "train", tmp_path)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(VitsslError, match="does not exist; point data.val at a folder of images"):
        resolve_dataset(str(tmp_path / "nope"), "val", tmp_path)


def test_folder_labelled_detection(tmp_path: Path, make_image) -> None:
    make_image(tmp_path / "classes" / "a" / "1.png", seed=0)
    make_image(tmp_path / "classes" / "b" / "2.png", seed=1)
    assert resolve_dataset(str(tmp_path / "classes"), "train", tmp_path) == (tmp_path / "classes", True)
    make_image(tmp_path / "nested" / "2021" / "05" / "1.png", seed=0)
    assert resolve_dataset(str(tmp_path / "nested"), "train", tmp_path) == (tmp_path / "nested", False)
    make_image(tmp_path / "flat" / "1.png", seed=0)
    assert resolve_dataset(str(tmp_path / "flat"), "train", tmp_path) == (tmp_path / "flat", False)


def test_val_folder_must_be_labelled(tmp_path: Path, make_image) -> None:
    make_image(tmp_path / "flat" / "1.png", seed=0)
    with pytest.raises(VitsslError, match="no class sub-folders, but evaluation needs labels"):
        resolve_dataset(str(tmp_path / "flat"), "val", tmp_path)
    make_image(tmp_path / "deep" / "cls" / "sub" / "1.png", seed=0)
    assert resolve_dataset(str(tmp_path / "deep"), "val", tmp_path) == (tmp_path / "deep", True)
    # Class folders plus stray images in the root: usable for evaluation (the strays are ignored), but not
    # unambiguous enough to call labelled for pretraining.
    make_image(tmp_path / "mixed" / "stray.png", seed=0)
    make_image(tmp_path / "mixed" / "cls" / "1.png", seed=0)
    assert resolve_dataset(str(tmp_path / "mixed"), "val", tmp_path) == (tmp_path / "mixed", True)
    assert resolve_dataset(str(tmp_path / "mixed"), "train", tmp_path) == (tmp_path / "mixed", False)


def test_cifar10_download_failure_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: Any, **kwargs: Any) -> None:
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(VitsslError) as info:
        resolve_dataset("cifar10", "train", tmp_path)
    message = str(info.value)
    assert message.startswith("could not download cifar10 (URLError")
    assert "set data.train to a local image folder, e.g. data.train=/path/to/cifar10/train" in message
    with pytest.raises(VitsslError, match="data.val=/path/to/cifar10/test"):
        resolve_dataset("cifar10", "val", tmp_path)
    assert not (tmp_path / "cifar10-folders").exists()


class _FakeCIFAR10:
    """Stands in for torchvision's CIFAR10: 12 tiny train and 6 test images over 3 classes."""

    calls = 0

    def __init__(self, root: str, train: bool, download: bool) -> None:
        type(self).calls += 1
        count = 12 if train else 6
        self.data = np.random.default_rng(int(train)).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
        self.targets = [i % 3 for i in range(count)]
        self.classes = ["airplane", "automobile", "bird"]


def test_cifar10_export_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _FakeCIFAR10)
    root, labelled = resolve_dataset("cifar10", "val", tmp_path)
    assert labelled and root == tmp_path / "cifar10-folders" / "test"
    dataset = ImageFolderDataset(root, labelled=True)
    assert dataset.classes == ["airplane", "automobile", "bird"] and len(dataset) == 6
    assert dataset.paths[0].name == "0.png" and dataset.targets == [0, 0, 1, 1, 2, 2]
    assert np.array_equal(np.asarray(dataset.image(0)), _FakeCIFAR10("", False, True).data[0])
    calls = _FakeCIFAR10.calls
    assert ensure_cifar10_folders(tmp_path) == tmp_path / "cifar10-folders"
    assert _FakeCIFAR10.calls == calls  # exported once, reused afterwards
    assert len(ImageFolderDataset(tmp_path / "cifar10-folders" / "train", labelled=True)) == 12
