"""Multi-crop views (DINO recipe), their pixel operations, and the evaluation transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as tvf
from PIL import Image, ImageEnhance, ImageOps

from vitssl.data.seeding import sample_generator
from vitssl.data.views import crop_ops
from vitssl.data.views.multicrop import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    CropSpec,
    EvalTransform,
    MultiCropTransform,
    dino_crops,
)
from vitssl.errors import VitsslError


def _image(width: int = 32, height: int = 32, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_dino_crops_recipe() -> None:
    crops = dino_crops()
    assert [c.size for c in crops] == [224, 224] + [96] * 8
    assert [c.blur_p for c in crops] == [1.0, 0.1] + [0.5] * 8
    assert [c.solarize_p for c in crops] == [0.0, 0.2] + [0.0] * 8
    assert crops[0].scale == (0.4, 1.0) and crops[2].scale == (0.05, 0.4)
    assert crops[0].brightness == 0.4 and crops[0].hue == 0.1 and crops[0].grayscale_p == 0.2


def test_no_local_crops_widens_default_global_scale_only() -> None:
    assert [c.scale for c in dino_crops(local_count=0)] == [(0.14, 1.0)] * 2
    assert [c.scale for c in dino_crops(local_count=0, global_scale=(0.3, 1.0))] == [(0.3, 1.0)] * 2


def test_overrides_apply_to_every_crop_and_unknown_ones_fail() -> None:
    crops = dino_crops(32, local_count=2, local_size=16, hue=0.0, jitter_p=0.5)
    assert all(c.hue == 0.0 and c.jitter_p == 0.5 for c in crops)
    with pytest.raises(VitsslError, match="unknown crop setting.*colour"):
        dino_crops(colour=0.3)


def test_normalisation_statistics_are_validated() -> None:
    with pytest.raises(VitsslError, match="data.mean and data.std need 3 values"):
        MultiCropTransform(dino_crops(), (0.5, 0.5), (0.2, 0.2, 0.2))
    with pytest.raises(VitsslError, match="std > 0"):
        EvalTransform(32, IMAGENET_MEAN, (0.2, 0.0, 0.2))


def test_crop_spec_validation() -> None:
    with pytest.raises(VitsslError, match="scale"):
        CropSpec(size=32, scale=(0.8, 0.2))
    with pytest.raises(VitsslError, match="flip_p"):
        CropSpec(size=32, scale=(0.2, 1.0), flip_p=1.5)


@pytest.mark.parametrize(
    ("local_count", "local_size", "expected"),
    [
        (0, 16, [32, 32]),
        (6, 16, [32, 32] + [16] * 6),
        (4, [16, 8], [32, 32, 16, 8, 16, 8]),
    ],
)
def test_view_shapes_and_dtypes(local_count: int, local_size: int | list[int], expected: list[int]) -> None:
    transform = MultiCropTransform(dino_crops(32, local_count=local_count, local_size=local_size), *_cifar())
    views = transform(_image(), sample_generator(0, 0, 0))
    assert [v.shape for v in views] == [(3, s, s) for s in expected]
    assert all(v.dtype == torch.float32 and v.is_contiguous() and torch.isfinite(v).all() for v in views)


def _cifar() -> tuple[tuple[float, ...], tuple[float, ...]]:
    return CIFAR10_MEAN, CIFAR10_STD


@pytest.mark.parametrize(("width", "height"), [(5, 7), (1, 1), (300, 2)])
def test_images_smaller_or_odder_than_the_crop(width: int, height: int) -> None:
    transform = MultiCropTransform(dino_crops(32, local_count=2, local_size=16), IMAGENET_MEAN, IMAGENET_STD)
    for index in range(10):
        views = transform(_image(width, height), sample_generator(0, 0, index))
        assert [tuple(v.shape) for v in views] == [(3, 32, 32)] * 2 + [(3, 16, 16)] * 2


def test_non_rgb_input_is_converted() -> None:
    transform = MultiCropTransform(dino_crops(16, local_count=0), *_cifar())
    views = transform(_image().convert("L"), sample_generator(0, 0, 0))
    assert views[0].shape == (3, 16, 16)


def test_same_generator_seed_same_views_and_new_seed_new_views() -> None:
    transform = MultiCropTransform(dino_crops(32, local_count=6, local_size=16), *_cifar())
    image = _image()
    a = transform(image, sample_generator(1, 0, 5))
    b = transform(image, sample_generator(1, 0, 5))
    c = transform(image, sample_generator(1, 1, 5))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not any(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_normalisation_values_without_augmentation() -> None:
    plain = CropSpec(size=4, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0, jitter_p=0, grayscale_p=0)
    colour = (200, 100, 50)
    view = MultiCropTransform([plain], IMAGENET_MEAN, IMAGENET_STD)(
        Image.new("RGB", (8, 8), colour), torch.Generator().manual_seed(0)
    )[0]
    expected = [(c / 255 - m) / s for c, m, s in zip(colour, IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    assert torch.allclose(view, torch.tensor(expected).view(3, 1, 1).expand(3, 4, 4), atol=1e-5)


def test_flip_and_grayscale_happen_with_their_probabilities() -> None:
    spec = CropSpec(size=6, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.5, jitter_p=0, grayscale_p=0.2)
    transform = MultiCropTransform([spec], (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    image = _image(6, 6, seed=3)
    original = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
    flips = greys = 0
    trials = 400
    for index in range(trials):
        view = transform(image, sample_generator(0, 0, index))[0]
        grey = torch.allclose(view[0], view[1]) and torch.allclose(view[1], view[2])
        greys += grey
        if not grey:
            flips += torch.allclose(view, original.flip(-1), atol=1e-6)
    assert 0.14 < greys / trials < 0.26
    assert 0.4 < flips / (trials - greys) < 0.6


def test_random_resized_crop_box_bounds_and_fallback() -> None:
    draws = crop_ops.Draws(torch.Generator().manual_seed(0))
    for _ in range(200):
        left, top, right, bottom = crop_ops.random_resized_crop_box(40, 30, (0.2, 0.6), (3 / 4, 4 / 3), draws)
        assert 0 <= left < right <= 40 and 0 <= top < bottom <= 30
        assert 0.15 <= (right - left) * (bottom - top) / 1200 <= 0.65
    # A 300 x 2 strip fits no 3/4..4/3 crop of 20% or more: the fallback is the central 3 x 2 box.
    assert crop_ops.random_resized_crop_box(300, 2, (0.2, 1.0), (3 / 4, 4 / 3), draws) == (148, 0, 151, 2)


def test_pixel_ops_match_pil_and_torchvision() -> None:
    image = _image(20, 30, seed=1)
    for factor in (0.6, 1.4):
        assert np.array_equal(
            np.asarray(crop_ops.adjust_contrast(image, factor)),
            np.asarray(ImageEnhance.Contrast(image).enhance(factor)),
        )
    for shift in (-0.5, -0.1, 0.05, 0.3):
        assert np.array_equal(np.asarray(crop_ops.shift_hue(image, shift)), np.asarray(tvf.adjust_hue(image, shift)))
    assert np.array_equal(np.asarray(crop_ops.solarize(image, 128)), np.asarray(ImageOps.solarize(image, 128)))
    assert np.array_equal(np.asarray(crop_ops.grayscale(image)), np.asarray(tvf.rgb_to_grayscale(image, 3)))


def test_eval_transform_matches_torchvision_resize_and_centre_crop() -> None:
    transform = EvalTransform(8, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), resize=16)
    for width, height in ((64, 32), (30, 50), (8, 8)):
        image = _image(width, height, seed=width)
        view = transform(image)
        assert view.shape == (3, 8, 8) and view.dtype == torch.float32
        resized = tvf.resize(image, 16, interpolation=tvf.InterpolationMode.BICUBIC)
        expected = tvf.to_tensor(tvf.center_crop(resized, 8))
        assert torch.allclose(view, expected, atol=1e-6)
        assert torch.equal(view, transform(image, sample_generator(0, 0, 0)))  # the generator is unused
    with pytest.raises(VitsslError, match="resize"):
        EvalTransform(32, IMAGENET_MEAN, IMAGENET_STD, resize=16)
