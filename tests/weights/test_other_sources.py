"""Every other SOURCE kind through ``vitssl.load_backbone``: SiT and EsViT release layouts, timm names with a
local file, transformers ViTModel folders, vitssl runs and export folders; and bad sources as one line."""

from __future__ import annotations

import re

import pytest
import timm
import torch

import vitssl
from vitssl.errors import VitsslError
from vitssl.methods.sit.heads import build_sit_backbone
from vitssl.models.backbones import build_backbone


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference of two tensors of one shape."""
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a.detach().float() - b.detach().float()).abs().max())


def _images(size: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(size))


def test_sit_release_layout(tmp_path):
    torch.manual_seed(0)
    sit = build_sit_backbone("vit_small", patch_size=16, img_size=64, depth=2, drop_path_rate=0.0).eval()
    names = {"cls_token": "rot_token", "reg_token": "contrastive_token"}
    state = {names.get(k, k): v for k, v in sit.model.state_dict().items()}
    heads = {"rot_head.weight": torch.zeros(4, 384), "contrastive_head.weight": torch.zeros(512, 384)}
    heads |= {"convTrans.weight": torch.zeros(384, 3, 16, 16), "rot_w": torch.ones(1), "recons_w": torch.ones(1)}
    torch.save({"model": {**state, **heads}, "epoch": 3}, tmp_path / "checkpoint.pth")
    backbone = vitssl.load_backbone(tmp_path / "checkpoint.pth")
    with torch.no_grad():
        tokens = sit.model.forward_features(_images(64))
        assert max_diff(backbone.pooled(_images(64)), tokens[:, 1]) < 1e-5  # the contrastive token


def test_esvit_swin_release_layout(tmp_path):
    torch.manual_seed(0)
    swin = build_backbone(
        "swin_tiny_patch4_window7_224", embed_dim=48, depths=(2, 2), num_heads=(2, 4), window_size=7
    ).eval()
    # the Swin paper's layout: patch merging at the end of a stage, not at the start of the next as in timm
    official = {
        re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", k): v
        for k, v in swin.model.state_dict().items()
    }
    teacher = {f"backbone.{k}": v for k, v in official.items()} | {"head.mlp.0.weight": torch.zeros(4, 96)}
    teacher |= {"head_dense.mlp.0.weight": torch.zeros(4, 96)}
    torch.save({"teacher": teacher, "student": teacher}, tmp_path / "esvit.pth")
    backbone = vitssl.load_backbone(tmp_path / "esvit.pth")
    with torch.no_grad():
        assert max_diff(backbone.pooled(_images(224)), swin.pooled(_images(224))) == 0.0


def test_timm_name_with_a_local_file(tmp_path):
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0).eval()
    torch.save(model.state_dict(), tmp_path / "weights.pth")
    backbone = vitssl.load_backbone(f"timm:vit_tiny_patch16_224.augreg_in21k@{tmp_path / 'weights.pth'}")
    with torch.no_grad():
        assert max_diff(backbone.pooled(_images(224)), model.forward_features(_images(224))[:, 0]) == 0.0


def test_timm_dino_tag_uses_dino_interpolation(tmp_path):
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, depth=1)
    torch.save(model.state_dict(), tmp_path / "w.pth")
    with pytest.raises(VitsslError, match="timm could not create"):  # depth 1 is not the named architecture
        vitssl.load_backbone(f"timm:vit_small_patch16_224.dino@{tmp_path / 'w.pth'}")


def test_hf_vit_model_folder(tmp_path):
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256, image_size=32, patch_size=8
    )
    model = ViTModel(config, add_pooling_layer=True).eval()
    model.save_pretrained(tmp_path / "hf")
    backbone = vitssl.load_backbone(f"hf:{tmp_path / 'hf'}")
    with torch.no_grad():
        ref = model(pixel_values=_images(32)).last_hidden_state[:, 0]
        assert max_diff(backbone.pooled(_images(32)), ref) < 1e-5
    assert max_diff(vitssl.load_backbone(tmp_path / "hf").pooled(_images(32)), ref) < 1e-5  # prefix optional


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a checkpoint", "could not read"),
        ({"foo.weight": torch.zeros(2)}, "no known layout"),
        ({"epoch": 3}, "holds no tensors"),
    ],
)
def test_bad_files_are_one_line(tmp_path, content, message):
    path = tmp_path / "bad.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(VitsslError, match=message) as info:
        vitssl.load_backbone(path)
    assert "\n" not in str(info.value)


def test_missing_tensor_is_named(tmp_path, dino_release):
    path, _ = dino_release
    state = torch.load(path, weights_only=True)
    del state["blocks.1.mlp.fc2.bias"]
    state["blocks.0.attn.extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "torn.pth")
    with pytest.raises(VitsslError, match=r"blocks\.1\.mlp\.fc2\.bias.*blocks\.0\.attn\.extra") as info:
        vitssl.load_backbone(tmp_path / "torn.pth")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("/nonexistent/dino.pth", "does not exist"),
        ("timm:no_such_model_xyz", "timm has no model"),
        ("timm:vit_tiny_patch16_224.augreg_in21k@/nonexistent/w.pth", "does not exist"),
    ],
)
def test_bad_names_are_one_line(source, message):
    with pytest.raises(VitsslError, match=message):
        vitssl.load_backbone(source)
