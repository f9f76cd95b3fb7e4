"""timm round trips: the export loads in ``timm.create_model`` with no missing or unexpected key and gives the
training backbone's features (max abs diff <= 1e-5) for ViT, Swin (swin_mini_32: patch 2, window 4) and SiT
(whose contrastive token is a timm register token)."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from safetensors.torch import load_file

from vitssl.export import export_run
from vitssl.models.backbones import Backbone

from .conftest import images_for, wrap_like

KINDS = ("vit", "swin", "sit")


@pytest.fixture(scope="module")
def exports(runs, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("timm_exports")
    return {kind: export_run(runs[kind], "timm", root / kind, with_heads=kind == "vit") for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_timm_create_model_loads_the_export_exactly(kind, exports, reference):
    out = exports[kind].out
    config = json.loads((out / "config.json").read_text())
    model = timm.create_model(
        config["architecture"],
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(out / "model.safetensors")),
        num_classes=0,
        **config["model_args"],
    ).eval()
    weights = load_file(str(out / "model.safetensors"))
    assert set(weights) == set(model.state_dict())  # no missing, no unexpected key
    cfg, backbone = reference(kind)
    x = images_for(cfg)
    with torch.no_grad():
        ref, got = backbone(x), wrap_like(backbone, model)(x)
        diff = max(float((ref.pooled - got.pooled).abs().max()), float((ref.tokens - got.tokens).abs().max()))
        print(f"timm {kind}: max abs diff {diff:.2e}")
        assert diff <= 1e-5
        if kind == "sit":  # SiT's contrastive token is timm's register token, after the class token
            assert model.num_reg_tokens == 1 and model.cls_token is not None
            assert float((model.forward_features(x)[:, 1] - ref.pooled).abs().max()) <= 1e-5
        else:  # timm's own head pooling gives vitssl's pooled feature
            assert float((model.forward_head(model.forward_features(x)) - ref.pooled).abs().max()) <= 1e-5


def test_timm_local_dir_loads_the_export(exports, reference):
    model = timm.create_model(f"local-dir:{exports['swin'].out}", pretrained=True).eval()
    cfg, backbone = reference("swin")
    x = images_for(cfg)
    with torch.no_grad():
        diff = float((Backbone(model)(x).pooled - backbone(x).pooled).abs().max())
    print(f"timm local-dir swin: max abs diff {diff:.2e}")
    assert diff <= 1e-5


def test_with_heads_writes_the_heads_next_to_the_backbone(exports):
    heads = load_file(str(exports["vit"].out / "heads.safetensors"))
    assert heads and all(k.startswith("head.") for k in heads)


def test_model_card_has_results_load_commands_and_checks(exports):
    card = (exports["vit"].out / "README.md").read_text()
    assert "61.5" in card and "knn.json" in card  # the run's evaluation results
    assert "timm.create_model" in card and "local-dir:" in card
    assert "max abs diff" in card and "DINO" in card and "teacher" in card
    assert "mean [0.485, 0.456, 0.406]" in card
