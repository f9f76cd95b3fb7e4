"""Online k-NN during pretraining on fixed, capped labelled subsets (METHODS.md section 1.5)."""

from __future__ import annotations

import torch

from vitssl.config import PretrainConfig
from vitssl.data.build import build_labelled_dataset
from vitssl.data.loader import build_loader
from vitssl.data.named import resolve_dataset
from vitssl.eval.features import extract_features
from vitssl.eval.knn import weighted_knn
from vitssl.models.backbones import Backbone


def knn_memory_spec(cfg: PretrainConfig) -> str | None:
    """The labelled memory set: ``data.knn_train``, else ``data.train`` when it is labelled."""
    if cfg.data.knn_train:
        return cfg.data.knn_train
    _, labelled = resolve_dataset(cfg.data.train, "train", cfg.data.cache_dir)
    return cfg.data.train if labelled else None


class KNNMonitor:
    """Builds the two labelled subsets once and scores a backbone on them."""

    def __init__(self, cfg: PretrainConfig, device: torch.device) -> None:
        memory_spec = knn_memory_spec(cfg)
        assert cfg.data.val is not None and memory_spec is not None
        t = cfg.train
        self.cfg = cfg
        self.device = device
        self.memory = build_labelled_dataset(cfg, memory_spec, "train", t.knn_max_train, "data.knn_train")
        self.queries = build_labelled_dataset(cfg, cfg.data.val, "val", t.knn_max_val, "data.val")

    @classmethod
    def maybe(cls, cfg: PretrainConfig, device: torch.device) -> KNNMonitor | None:
        if not cfg.data.val or knn_memory_spec(cfg) is None:
            return None
        return cls(cfg, device)

    def _features(self, backbone: Backbone, dataset) -> tuple[torch.Tensor, torch.Tensor]:
        loader = build_loader(
            dataset,
            batch_size=max(self.cfg.data.batch_size, 128),
            num_workers=min(self.cfg.data.num_workers, 2),
            seed=0,
            shuffle=False,
            drop_last=False,
        )
        return extract_features(backbone.pooled, loader, self.device)

    @torch.no_grad()
    def evaluate(self, backbone: Backbone, ks: tuple[int, ...] | None = None) -> dict[int, dict[str, float]]:
        was_training = backbone.training
        backbone.eval()
        try:
            train_x, train_y = self._features(backbone, self.memory)
            test_x, test_y = self._features(backbone, self.queries)
        finally:
            backbone.train(was_training)
        return weighted_knn(
            train_x,
            train_y,
            test_x,
            test_y,
            ks=ks or (self.cfg.train.knn_k,),
            num_classes=len(self.memory.classes),
        )
