"""The collapse diagnostics against hand-computed values."""

import math

import pytest
import torch

from vitssl.methods.diagnostics import collapse_diagnostics


def _diagnostics(probs: torch.Tensor) -> dict[str, float]:
    features = torch.randn(probs.shape[0], 8, generator=torch.Generator().manual_seed(0))
    return {k: float(v) for k, v in collapse_diagnostics([probs], features).items()}


def test_an_even_spread_uses_every_prototype():
    d = _diagnostics(torch.full((4, 16), 1 / 16))
    assert d["prototypes_in_use"] == pytest.approx(16)
    assert d["kl_to_uniform"] == pytest.approx(0, abs=1e-6)
    assert d["teacher_entropy"] == pytest.approx(math.log(16))


def test_a_batch_on_one_prototype_uses_one():
    probs = torch.zeros(4, 16)
    probs[:, 3] = 1
    d = _diagnostics(probs)
    assert d["prototypes_in_use"] == pytest.approx(1)
    assert d["kl_to_uniform"] == pytest.approx(math.log(16))


def test_one_hot_images_on_two_prototypes_use_two():
    """Each image sharp (entropy 0) but the batch split evenly over two prototypes: two in use."""
    probs = torch.zeros(4, 16)
    probs[:2, 0] = 1
    probs[2:, 5] = 1
    d = _diagnostics(probs)
    assert d["prototypes_in_use"] == pytest.approx(2)
    assert d["teacher_entropy"] == pytest.approx(0, abs=1e-6)
