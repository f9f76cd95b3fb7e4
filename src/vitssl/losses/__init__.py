"""Self-supervised losses: pure modules over tensors, no trainer knowledge. SiT's losses live with the method
(:mod:`vitssl.methods.sit.losses`)."""

from vitssl.losses.dino import DINOLoss, dino_cross_entropy
from vitssl.losses.esvit import EsViTLoss, EsViTLossParts, match_regions

__all__ = [
    "EsViTLoss",
    "EsViTLossParts",
    "match_regions",
    "DINOLoss",
    "dino_cross_entropy",
]
