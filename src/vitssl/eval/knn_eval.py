"""``vitssl knn``: weighted k-NN of a pretrained (or freshly initialised) backbone on labelled folders."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from vitssl.config import PretrainConfig, from_dict
from vitssl.data.build import build_labelled_dataset
from vitssl.data.loader import build_loader
from vitssl.engine.checkpoint import load_checkpoint
from vitssl.engine.knn_monitor import knn_memory_spec
from vitssl.errors import VitsslError
from vitssl.eval.features import extract_features
from vitssl.eval.knn import weighted_knn
from vitssl.methods.base import Method, build_method


def load_method(checkpoint: str | Path, at_init: bool = False) -> tuple[PretrainConfig, Method]:
    """Rebuild the method of a run folder or checkpoint file, with its trained weights (or, with ``at_init``,
    the exact weights the run started from: same config, same seed)."""
    ckpt = load_checkpoint(checkpoint)
    cfg = from_dict(ckpt["config"])
    torch.manual_seed(cfg.train.seed)
    method = build_method(cfg)
    if not at_init:
        try:
            method.load_state_dict(ckpt["method"])
        except RuntimeError as exc:
            raise VitsslError(
                f"checkpoint {checkpoint} does not match its own config "
                f"({str(exc).splitlines()[0]}); was it written by another vitssl version?"
            ) from None
    return cfg, method.eval()


@dataclass
class KNNSettings:
    train: str | None = None
    val: str | None = None
    ks: tuple[int, ...] = (10, 20, 100, 200)
    temperature: float = 0.07
    max_train: int | None = None
    max_val: int | None = None
    batch_size: int = 256
    num_workers: int = 2
    device: str = "cpu"


@torch.no_grad()
def evaluate_knn(cfg: PretrainConfig, method: Method, s: KNNSettings) -> dict[int, dict[str, float]]:
    train_spec = s.train or knn_memory_spec(cfg)
    val_spec = s.val or cfg.data.val
    if not train_spec or not val_spec:
        raise VitsslError(
            "no labelled folders to evaluate on; pass --train FOLDER and --val FOLDER (root/<class>/<images>)"
        )
    memory = build_labelled_dataset(cfg, train_spec, "train", s.max_train, "--train")
    queries = build_labelled_dataset(cfg, val_spec, "val", s.max_val, "--val")
    device = torch.device(s.device)
    backbone = method.eval_backbone().to(device).eval()
    feats = []
    for name, dataset in (("memory", memory), ("queries", queries)):
        loader = build_loader(
            dataset,
            batch_size=s.batch_size,
            num_workers=s.num_workers,
            seed=0,
            shuffle=False,
            drop_last=False,
        )
        feats.append(extract_features(backbone.pooled, loader, device, progress=f"features ({name})"))
    (train_x, train_y), (test_x, test_y) = feats
    return weighted_knn(
        train_x, train_y, test_x, test_y, ks=s.ks, temperature=s.temperature, num_classes=len(memory.classes)
    )


def save_knn_json(results: dict[str, dict[int, dict[str, float]]], path: Path, extra: dict) -> None:
    payload = {**extra, **{name: {str(k): v for k, v in r.items()} for name, r in results.items()}}
    path.write_text(json.dumps(payload, indent=2))
