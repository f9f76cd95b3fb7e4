"""Self-supervised methods and their registry (the config's ``method:`` name maps to a class)."""

from vitssl.methods.base import Method, StepOutput, available_methods, build_method, register_method
from vitssl.methods.dino import DINO
from vitssl.methods.esvit import EsViT
from vitssl.methods.sit import SiT

__all__ = ["Method", "StepOutput", "available_methods", "build_method", "register_method", "DINO", "EsViT", "SiT"]
