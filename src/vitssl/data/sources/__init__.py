"""Where images come from: image folders, named datasets, the synthetic set, discovery, subsets, the cache."""
