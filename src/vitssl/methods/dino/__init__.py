"""DINO (Caron et al. 2021, arXiv 2104.14294): its config section and method."""

from vitssl.methods.registry import MethodInfo, describe_method

describe_method("dino", MethodInfo("DINO (Caron et al. 2021, arXiv 2104.14294)"))
