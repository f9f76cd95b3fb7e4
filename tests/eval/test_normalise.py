"""Tests of the one denormalisation used by every picture (vitssl.data.views.normalise)."""

from __future__ import annotations

import numpy as np
import torch

from vitssl.data.views.normalise import denormalise, to_image, to_uint8

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _normalise(pixels: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) normalised, as the evaluation transform does."""
    x = torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def test_uint8_round_trip_is_exact() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size=(2, 5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8(_normalise(pixels), MEAN, STD), pixels)
    assert np.asarray(to_image(_normalise(pixels)[1], MEAN, STD)).tolist() == pixels[1].tolist()


def test_denormalise_is_channels_last_and_clipped() -> None:
    images = torch.full((1, 3, 2, 4), 100.0, requires_grad=True)  # far above white
    out = denormalise(images, MEAN, STD)
    assert out.shape == (1, 2, 4, 3) and out.dtype == np.float32
    assert out.min() == 1.0 and out.max() == 1.0
    assert denormalise(-images, MEAN, STD).max() == 0.0
