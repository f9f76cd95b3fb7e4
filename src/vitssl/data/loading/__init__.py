"""Loaders: the epoch sampler, worker initialisation, the data loader itself."""
