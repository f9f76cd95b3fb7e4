"""The synthetic shapes dataset: layout, counts, masks, determinism, atomic generation, and difficulty."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from vitssl.data.sources import synthetic
from vitssl.data.sources.folders import ImageFolderDataset
from vitssl.data.sources.synthetic import class_names, ensure_synthetic, mask_path
from vitssl.errors import VitsslError

TRAIN, TEST = 100, 30


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_synthetic(tmp_path_factory.mktemp("cache"), image_size=32, train_per_class=TRAIN, test_per_class=TEST)


def _pixels(dataset: ImageFolderDataset) -> tuple[torch.Tensor, torch.Tensor]:
    images = np.stack([np.asarray(dataset.image(i), dtype=np.float32) for i in range(len(dataset))])
    return torch.from_numpy(images), torch.tensor(dataset.targets)


def _knn_accuracy(train: torch.Tensor, train_y: torch.Tensor, test: torch.Tensor, test_y: torch.Tensor) -> float:
    """1-NN accuracy with cosine similarity."""
    train = torch.nn.functional.normalize(train.flatten(1), dim=1)
    test = torch.nn.functional.normalize(test.flatten(1), dim=1)
    nearest = (test @ train.T).argmax(dim=1)
    return (train_y[nearest] == test_y).float().mean().item()


def _standardise(images: torch.Tensor) -> torch.Tensor:
    """Per image: zero mean, unit variance (the usual normalisation of raw pixels)."""
    centred = images - images.mean(dim=(1, 2, 3), keepdim=True)
    return centred / (centred.std(dim=(1, 2, 3), keepdim=True) + 1e-3)


def _shape_feature(images: torch.Tensor) -> torch.Tensor:
    """Colour-blind contrast to the image's median grey: a crude hand-made shape cue."""
    grey = images.mean(dim=-1)
    median = grey.flatten(1).median(dim=1).values
    return (grey - median[:, None, None]).abs()


def test_layout_counts_and_classes(generated: Path) -> None:
    assert generated.name == f"synthetic-{synthetic.VERSION}-32px-{TRAIN}x{TEST}-seed0"
    assert len(class_names()) == 10 == len(set(class_names()))
    for split, count in (("train", TRAIN), ("test", TEST)):
        dataset = ImageFolderDataset(generated / split, labelled=True)
        assert dataset.classes == sorted(class_names())
        assert np.bincount(dataset.targets).tolist() == [count] * 10
        image = dataset.image(0)
        assert image.size == (32, 32) and image.mode == "RGB"


def test_masks_exist_and_are_partial(generated: Path) -> None:
    images = sorted((generated / "test").rglob("*.png"))
    assert images
    for image_path in images:
        mask = Image.open(mask_path(image_path))
        assert mask.mode == "L" and mask.size == (32, 32)
        values = np.asarray(mask)
        assert set(np.unique(values)) <= {0, 255}
        assert 0.02 < (values == 255).mean() < 0.9, image_path


def test_mask_path_mapping(tmp_path: Path) -> None:
    assert mask_path(tmp_path / "train" / "star" / "007.png") == tmp_path / "masks" / "train" / "star" / "007.png"
    with pytest.raises(VitsslError, match="not a synthetic dataset image"):
        mask_path(tmp_path / "other" / "star" / "007.png")


def test_learnable_but_not_trivial(generated: Path) -> None:
    train_x, train_y = _pixels(ImageFolderDataset(generated / "train", labelled=True))
    test_x, test_y = _pixels(ImageFolderDataset(generated / "test", labelled=True))
    raw = _knn_accuracy(_standardise(train_x), train_y, _standardise(test_x), test_y)
    shape = _knn_accuracy(_shape_feature(train_x), train_y, _shape_feature(test_x), test_y)
    print(f"1-NN accuracy: raw pixels {raw:.3f}, shape cue {shape:.3f}")
    # Chance is 0.10: raw pixels carry some signal (the class hue family), far from all of it ...
    assert 0.15 < raw < 0.9, raw
    # ... and a colour-blind shape cue alone is far above chance too: the class is also the shape.
    assert shape > 0.25, (shape, raw)


def test_deterministic_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = ensure_synthetic(tmp_path / "one", image_size=16, train_per_class=2, test_per_class=1, seed=5)
    second = ensure_synthetic(tmp_path / "two", image_size=16, train_per_class=2, test_per_class=1, seed=5)
    files = sorted(p.relative_to(first) for p in first.rglob("*.png"))
    assert len(files) == 2 * 10 * 3
    assert files == sorted(p.relative_to(second) for p in second.rglob("*.png"))
    for relative in files:
        assert np.array_equal(np.asarray(Image.open(first / relative)), np.asarray(Image.open(second / relative)))
    other_seed = ensure_synthetic(tmp_path / "one", image_size=16, train_per_class=2, test_per_class=1, seed=6)
    assert other_seed != first
    assert not np.array_equal(np.asarray(Image.open(first / files[0])), np.asarray(Image.open(other_seed / files[0])))

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("a complete dataset must be reused, not drawn again")

    monkeypatch.setattr(synthetic, "render_sample", fail)
    assert ensure_synthetic(tmp_path / "one", image_size=16, train_per_class=2, test_per_class=1, seed=5) == first


def test_interrupted_generation_leaves_nothing_that_looks_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = synthetic.render_sample
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "render_sample", flaky)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic(tmp_path, image_size=16, train_per_class=2, test_per_class=1)
    assert list(tmp_path.iterdir()) == []  # neither the target nor the staging folder remains
    monkeypatch.setattr(synthetic, "render_sample", real)
    root = ensure_synthetic(tmp_path, image_size=16, train_per_class=2, test_per_class=1)
    assert len(list(root.rglob("*.png"))) == 60


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(VitsslError, match="image_size >= 8"):
        ensure_synthetic(tmp_path, image_size=4)
