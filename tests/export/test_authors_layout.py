"""``vitssl export --format dino|sit``: the authors' layouts, loadable strictly into an independent
implementation of their ViT, and back through ``vitssl.load_backbone``."""

from __future__ import annotations

import json

import pytest
import torch

import vitssl
from dino_reference import RefViT
from vitssl.cli import main
from vitssl.errors import VitsslError
from vitssl.export import export_run


def test_dino_export_loads_strictly_into_the_authors_vit(runs, reference, tmp_path):
    result = export_run(runs["vit"], "dino", tmp_path / "dino")
    print(result.checks)
    assert max(result.checks.values()) < 1e-4
    weights = next(p for p in result.files if p.suffix == ".pth")
    kwargs = json.loads(weights.with_suffix(".json").read_text())["kwargs"]
    ref = RefViT(
        img_size=kwargs["img_size"][0],
        patch_size=kwargs["patch_size"],
        embed_dim=kwargs["embed_dim"],
        depth=kwargs["depth"],
        num_heads=kwargs["num_heads"],
        mlp_ratio=kwargs["mlp_ratio"],
        qkv_bias=kwargs["qkv_bias"],
    ).eval()
    ref.load_state_dict(torch.load(weights, weights_only=True), strict=True)
    _, backbone = reference("vit")
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    back = vitssl.load_backbone(weights, arch="vit_tiny")  # the tiny run's 3 heads of 64
    with torch.no_grad():
        assert float((ref(x) - backbone.pooled(x)).abs().max()) < 1e-4
        assert float((back.pooled(x) - backbone.pooled(x)).abs().max()) < 1e-4
        y = torch.randn(1, 3, 24, 32)  # off the native grid: DINO's interpolation on both sides
        assert float((back.pooled(y) - ref(y)).abs().max()) < 1e-4


def test_sit_export_round_trip(runs, reference, tmp_path):
    result = export_run(runs["sit"], "sit", tmp_path / "sit")
    print(result.checks)
    assert max(result.checks.values()) < 1e-4
    weights = next(p for p in result.files if p.suffix == ".pth")
    state = torch.load(weights, weights_only=True)
    assert "rot_token" in state and "contrastive_token" in state and "cls_token" not in state
    _, backbone = reference("sit")
    back = vitssl.load_backbone(weights, arch="vit_tiny")
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert float((back.model.forward_features(x) - backbone.model.forward_features(x)).abs().max()) == 0.0


@pytest.mark.parametrize(
    ("kind", "fmt", "message"),
    [("swin", "dino", "needs a ViT"), ("vit", "esvit", "not written"), ("vit", "sit", "needs a SiT")],
)
def test_inexpressible_layouts_are_one_line(runs, tmp_path, kind, fmt, message):
    with pytest.raises(VitsslError, match=message):
        export_run(runs[kind], fmt, tmp_path / "out")


def test_cli_writes_the_dino_files(runs, tmp_path, capsys):
    assert main(["export", str(runs["vit"]), "--format", "dino", "--out", str(tmp_path / "d")]) == 0
    assert "dino reference ViT tokens" in capsys.readouterr().out
    assert len(list((tmp_path / "d").glob("*.pth"))) == 1 and (tmp_path / "d" / "README.md").is_file()
