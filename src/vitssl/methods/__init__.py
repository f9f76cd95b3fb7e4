"""Self-supervised methods and their registry (the config's ``method:`` name maps to a factory and its config
sections). Importing this package registers the built-in methods."""

from vitssl.methods.base import Method, StepOutput
from vitssl.methods.dino.method import DINO, DINOConfig
from vitssl.methods.esvit.method import EsViT, EsViTConfig
from vitssl.methods.registry import (
    MethodInfo,
    available_methods,
    build_method,
    describe_method,
    method_info,
    register_method,
)
from vitssl.methods.sit.config import SiTConfig
from vitssl.methods.sit.method import SiT

__all__ = [
    "Method",
    "StepOutput",
    "MethodInfo",
    "available_methods",
    "describe_method",
    "method_info",
    "build_method",
    "register_method",
    "DINO",
    "DINOConfig",
    "EsViT",
    "EsViTConfig",
    "SiT",
    "SiTConfig",
]
