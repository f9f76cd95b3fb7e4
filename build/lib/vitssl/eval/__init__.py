"""Evaluation of frozen backbones: feature extraction and the weighted k-NN protocol of DINO."""

from vitssl.eval.features import extract_features, gather_from_all_ranks
from vitssl.eval.knn import DEFAULT_KS, format_knn_table, weighted_knn

__all__ = ["DEFAULT_KS", "extract_features", "format_knn_table", "gather_from_all_ranks", "weighted_knn"]
