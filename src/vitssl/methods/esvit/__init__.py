"""EsViT (Li et al. 2021, arXiv 2106.09785): its config section and method."""
