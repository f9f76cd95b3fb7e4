"""EsViT (Li et al. 2021, arXiv 2106.09785): its config section and method."""

from vitssl.methods.registry import MethodInfo, describe_method

describe_method("esvit", MethodInfo("EsViT (Li et al. 2021, arXiv 2106.09785)"))
