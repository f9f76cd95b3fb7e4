"""DINO (Caron et al. 2021, arXiv 2104.14294): its config section and method."""
