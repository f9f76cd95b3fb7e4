"""Small helpers shared by the weights-import tests."""

from __future__ import annotations

from torch import Tensor


def max_diff(a: Tensor, b: Tensor) -> float:
    """Largest absolute difference of two tensors of one shape."""
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a.detach().float() - b.detach().float()).abs().max())
