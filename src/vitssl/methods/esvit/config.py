"""The ``esvit`` config section: the weights and start of EsViT's view and region terms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from vitssl.config import field_with_help as _f
from vitssl.config.ranges import NON_NEGATIVE, Range, check_ranges

if TYPE_CHECKING:
    from vitssl.config import PretrainConfig


# Every numeric key of the section and its range; tests/test_config.py fails when a key is missing here.
ESVIT_RANGES: dict[str, Range] = {
    "esvit.view_weight": NON_NEGATIVE,
    "esvit.region_weight": NON_NEGATIVE,
    "esvit.region_loss_start": NON_NEGATIVE,
}


@dataclass
class EsViTConfig:
    view_weight: float = _f(0.5, "Weight of the view-level (DINO) term of each crop pair.")
    region_weight: float = _f(
        0.5,
        "Weight of the region-level term: each student region token learns from the teacher token of the "
        "other crop with the most similar backbone feature. 0 turns EsViT into DINO on the same backbone.",
    )
    region_loss_start: float = _f(
        0,
        "Epoch at which the region term switches on (several released EsViT models trained view-only for the "
        "first two thirds of the run). Before it, the region head still follows the EMA but gets no gradient.",
    )

    def validate(self, cfg: PretrainConfig) -> None:
        """Ranges of the ``esvit`` keys (config loading calls it for esvit runs)."""
        check_ranges(self, "esvit", ESVIT_RANGES)
