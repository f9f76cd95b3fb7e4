"""Backbones and heads."""

from vitssl.models.backbones import PRESETS, Backbone, Features, build_backbone
from vitssl.models.heads import DINOHead, WeightNormLinear

__all__ = ["PRESETS", "Backbone", "Features", "build_backbone", "DINOHead", "WeightNormLinear"]
