"""Self-supervised losses: pure modules over tensors, no trainer knowledge."""

from vitssl.losses.dino import DINOLoss, dino_cross_entropy

__all__ = ["DINOLoss", "dino_cross_entropy"]
