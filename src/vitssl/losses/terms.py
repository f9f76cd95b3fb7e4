"""Adding up loss terms, and the named, weighted terms a method adds to its main loss."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from torch import Tensor

__all__ = ["WeightedTerm", "sum_terms"]


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


@dataclass(frozen=True)
class WeightedTerm:
    """A named term of a method's loss (a regulariser such as KoLeo): the loss gains ``weight * value`` and the
    unweighted ``value`` is what gets logged under ``name``, so runs with different weights compare directly.

    Attributes:
        name: The metric name of the unweighted value.
        value: The unweighted term, a scalar that carries gradient.
        weight: Its factor in the loss.
    """

    name: str
    value: Tensor
    weight: float

    @property
    def weighted(self) -> Tensor:
        """``weight * value``: what the term adds to the loss."""
        return self.weight * self.value
