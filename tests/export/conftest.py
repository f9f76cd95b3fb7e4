"""Fixtures of the export tests: tiny run folders (ViT DINO, Swin EsViT, SiT), made without training.

A run folder here is what ``vitssl pretrain`` leaves behind as far as the exporters care: ``last.pt`` with the
method's state dict and config, and ``config.yaml``. The student is perturbed so that teacher and student differ
(an export of the wrong network would then be caught).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_OVERRIDES
from vitssl.checkpoints import save_atomic
from vitssl.config import load_config, save_config, to_dict
from vitssl.methods import build_method

VIT = [*TINY_OVERRIDES, "method=dino"]
SWIN = [
    *(o for o in TINY_OVERRIDES if not o.startswith(("model.", "crops."))),
    "method=esvit",
    "model.backbone=swin_mini_32",
    "crops.global_size=32",
    "crops.local_size=16",
    "crops.local_count=2",
]
SIT = [*(o for o in TINY_OVERRIDES if not o.startswith("crops.")), "method=sit", "crops.global_size=16"]
KINDS = {"vit": VIT, "swin": SWIN, "sit": SIT}


def make_run(folder: Path, overrides: list[str], seed: int = 0) -> Path:
    """A run folder with ``last.pt`` and ``config.yaml`` for ``overrides`` (no training step)."""
    cfg = load_config(None, [*overrides, f"train.out_dir={folder}", f"train.seed={seed}"])
    torch.manual_seed(seed)
    method = build_method(cfg)
    with torch.no_grad():
        for p in method.student.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    folder.mkdir(parents=True, exist_ok=True)
    save_atomic({"method": method.state_dict(), "config": to_dict(cfg)}, folder / "last.pt")
    save_config(cfg, folder / "config.yaml")
    return folder


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One tiny run folder per backbone kind: ``vit`` (DINO), ``swin`` (EsViT, swin_mini_32), ``sit``."""
    root = tmp_path_factory.mktemp("export_runs")
    made = {kind: make_run(root / kind, overrides) for kind, overrides in KINDS.items()}
    (made["vit"] / "knn.json").write_text(json.dumps({"pretrained": {"20": {"top1": 61.5, "top5": 90.25}}}))
    return made


@pytest.fixture(scope="session")
def reference(runs):
    """``reference(kind) -> (cfg, backbone)``: the run's evaluation backbone, rebuilt once per kind."""
    from vitssl.eval.loading import load_backbone

    cache: dict = {}

    def get(kind: str):
        if kind not in cache:
            cache[kind] = load_backbone(runs[kind])
        return cache[kind]

    return get


def images_for(cfg, batch: int = 3, seed: int = 1) -> torch.Tensor:
    """A fixed batch of noise images at the run's evaluation size."""
    size = cfg.data.eval_size or cfg.crops.global_size
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def wrap_like(reference_backbone, model):
    """A timm model seen through the same vitssl interface (and pooled feature) as ``reference_backbone``."""
    from vitssl.methods.sit.heads import SiTBackbone
    from vitssl.models.backbones import Backbone

    if isinstance(reference_backbone, SiTBackbone):
        return SiTBackbone(model, reference_backbone.feature)
    return Backbone(model)


def onnx_compare(session, backbone, shape, tokens: bool) -> float:
    """Max abs difference of an onnxruntime session's outputs from the backbone's on a seeded batch."""
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))
    got = session.run(None, {"pixel_values": x.numpy()})
    with torch.no_grad():
        ref = backbone(x)
    diffs = [np.abs(got[0] - ref.pooled.numpy()).max()]
    if tokens:
        assert got[1].shape == tuple(ref.tokens.shape)
        diffs.append(np.abs(got[1] - ref.tokens.numpy()).max())
    return float(max(diffs))
