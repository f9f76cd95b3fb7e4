"""Adding up loss terms."""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor


def sum_terms(terms: Iterable[Tensor]) -> Tensor:
    """The sum of one or more tensors, in order: ``sum`` without its integer start, so that the result is a tensor.

    Raises:
        ValueError: There is no term.
    """
    it = iter(terms)
    try:
        total = next(it)
    except StopIteration:
        raise ValueError("sum_terms needs at least one term") from None
    for term in it:
        total = total + term
    return total
