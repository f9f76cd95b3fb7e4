"""Weighted k-NN of a backbone on labelled datasets: the ``vitssl knn`` command and the trainer's online monitor.

Both build a labelled memory set and a query set, encode them with the backbone's pooled feature and vote with
:func:`vitssl.eval.knn.weighted_knn`. The command evaluates a finished run on (optionally capped) folders; the
monitor (docs/methods.md section 1.5) builds fixed, capped subsets once and scores the backbone during pretraining.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch.utils.data import Dataset, Subset

from vitssl import distributed as dist
from vitssl.config import PretrainConfig
from vitssl.data.build import build_labelled_dataset, knn_memory_spec
from vitssl.data.loading.loader import build_loader
from vitssl.data.sources.folders import ImageFolderDataset
from vitssl.errors import VitsslError
from vitssl.eval.features import extract_features
from vitssl.eval.knn import weighted_knn
from vitssl.models.backbones import Backbone


@dataclass
class KNNSettings:
    """Options of :func:`knn_of_backbone` (the CLI's help texts explain each)."""

    train: str | None = None
    val: str | None = None
    ks: tuple[int, ...] = (10, 20, 100, 200)
    temperature: float = 0.07
    max_train: int | None = None
    max_val: int | None = None
    batch_size: int = 256
    num_workers: int = 2
    device: str = "cpu"


class RawPixels(torch.nn.Module):
    """The images themselves as features (normalised pixels, flattened): the baseline of every k-NN.

    A pretrained network whose features score below its own input pixels has not learned anything useful yet,
    whatever its gain over initialisation (docs/learning.md: always report the three numbers side by side)."""

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)


def this_process_share(dataset: Dataset) -> Dataset:
    """The contiguous block of ``dataset`` this process evaluates (the whole dataset in a single process)."""
    world, rank = dist.world_size(), dist.rank()
    if world == 1:
        return dataset
    n = len(dataset)  # type: ignore[arg-type]
    per = -(-n // world)
    return Subset(dataset, range(min(rank * per, n), min((rank + 1) * per, n)))


class PooledEncoder(Protocol):
    """What a k-NN needs of a backbone: one feature vector per image."""

    def pooled(self, images: torch.Tensor) -> torch.Tensor: ...


def dataset_features(
    backbone: PooledEncoder,
    dataset: ImageFolderDataset,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    progress: bool | str = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-norm pooled features and labels of a whole labelled dataset, in dataset order.

    Under torchrun each process extracts one contiguous block of the dataset and the blocks are gathered in
    rank order: every image once, in dataset order, so the result is the single-process one."""
    loader = build_loader(
        this_process_share(dataset),
        batch_size=batch_size,
        num_workers=num_workers,
        seed=0,
        shuffle=False,
        drop_last=False,
    )
    return extract_features(backbone.pooled, loader, device, progress=progress)


@torch.no_grad()
def knn_on_datasets(
    backbone: PooledEncoder,
    memory: ImageFolderDataset,
    queries: ImageFolderDataset,
    ks: tuple[int, ...],
    *,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    temperature: float = 0.07,
    progress: bool = False,
) -> dict[int, dict[str, float]]:
    """Weighted k-NN of ``queries`` against ``memory`` on the backbone's pooled features (the caller sets eval
    mode); ``batch_size``, ``num_workers`` and ``device`` are those of the feature extraction."""
    train_x, train_y = dataset_features(
        backbone, memory, batch_size, num_workers, device, progress="features (memory)" if progress else False
    )
    test_x, test_y = dataset_features(
        backbone, queries, batch_size, num_workers, device, progress="features (queries)" if progress else False
    )
    return weighted_knn(
        train_x, train_y, test_x, test_y, ks=ks, temperature=temperature, num_classes=len(memory.classes)
    )


def knn_of_backbone(
    backbone: Backbone, memory: ImageFolderDataset, queries: ImageFolderDataset, s: KNNSettings
) -> dict[int, dict[str, float]]:
    """``vitssl knn``: weighted k-NN of an evaluation backbone (any SOURCE's) on the given memory and query sets."""
    device = torch.device(s.device)
    backbone = backbone.to(device).eval()
    return knn_on_datasets(
        backbone,
        memory,
        queries,
        s.ks,
        batch_size=s.batch_size,
        num_workers=s.num_workers,
        device=device,
        temperature=s.temperature,
        progress=True,
    )


def save_knn_json(results: dict[str, dict[int, dict[str, float]]], path: Path, extra: dict) -> None:
    """Write ``{**extra, name: {k: {"top1", "top5"}}}`` for every evaluated network (e.g. pretrained, init)."""
    payload = {**extra, **{name: {str(k): v for k, v in r.items()} for name, r in results.items()}}
    path.write_text(json.dumps(payload, indent=2))


class KNNMonitor:
    """The trainer's online k-NN: builds the two labelled, capped subsets once and scores a backbone on them."""

    def __init__(self, cfg: PretrainConfig, device: torch.device) -> None:
        memory_spec = knn_memory_spec(cfg)
        if cfg.data.val is None or memory_spec is None:
            raise VitsslError("the online k-NN needs data.val and a labelled data.knn_train (or data.train)")
        t = cfg.train
        self.cfg = cfg
        self.device = device
        self.memory = build_labelled_dataset(cfg, memory_spec, "train", t.knn_max_train, "data.knn_train")
        self.queries = build_labelled_dataset(cfg, cfg.data.val, "val", t.knn_max_val, "data.val")

    @classmethod
    def maybe(cls, cfg: PretrainConfig, device: torch.device) -> KNNMonitor | None:
        """A monitor when the config names labelled memory and query sets, else None (no online k-NN)."""
        if not cfg.data.val or knn_memory_spec(cfg) is None:
            return None
        return cls(cfg, device)

    @torch.no_grad()
    def evaluate(self, backbone: Backbone, ks: tuple[int, ...] | None = None) -> dict[int, dict[str, float]]:
        """k-NN accuracy at ``ks`` (default: ``train.knn_k``); the backbone's train/eval mode is restored."""
        was_training = backbone.training
        backbone.eval()
        # Large batches are cheap without gradients; few workers because training loaders already hold the CPU.
        try:
            return knn_on_datasets(
                backbone,
                self.memory,
                self.queries,
                ks or (self.cfg.train.knn_k,),
                batch_size=max(self.cfg.data.batch_size, 128),
                num_workers=min(self.cfg.data.num_workers, 2),
                device=self.device,
            )
        finally:
            backbone.train(was_training)
