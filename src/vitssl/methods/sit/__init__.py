"""SiT (Atito et al. 2021, arXiv 2104.03602): corruptions, views, heads, losses, config section, method and
the reconstruction pictures."""
