"""Self-supervised losses: pure modules over tensors, no trainer knowledge."""

from vitssl.losses.dino import DINOLoss, dino_cross_entropy
from vitssl.losses.esvit import EsViTLoss, EsViTLossParts, match_regions
from vitssl.losses.sit import (
    FixedWeighting,
    UncertaintyWeighting,
    info_nce,
    nt_xent,
    reconstruction_l1,
    rotation_loss,
    symmetric_info_nce,
)

__all__ = [
    "EsViTLoss",
    "EsViTLossParts",
    "match_regions",
    "DINOLoss",
    "dino_cross_entropy",
    "FixedWeighting",
    "UncertaintyWeighting",
    "info_nce",
    "nt_xent",
    "reconstruction_l1",
    "rotation_loss",
    "symmetric_info_nce",
]
