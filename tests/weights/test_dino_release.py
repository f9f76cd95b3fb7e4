"""DINO's release files through ``vitssl.load_backbone``, against an independent implementation of the authors'
ViT (tests/dino_reference.py): the [CLS] feature their ``model(x)`` returns, at the native size and at
others (DINO's position-embedding interpolation)."""

from __future__ import annotations

import pytest
import torch

import vitssl
from dino_reference import RefViT, random_state
from vitssl.models.pos_embed import dino_pos_embed

SIZES = [(224, 224), (480, 640), (96, 96), (160, 96)]


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference of two tensors of one shape."""
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a.detach().float() - b.detach().float()).abs().max())


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_release_pooled_is_the_authors_cls(dino_release, height, width):
    path, ref = dino_release
    backbone = vitssl.load_backbone(path)
    x = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(height + width))
    with torch.no_grad():
        diff = max_diff(backbone.pooled(x), ref(x))
    print(f"DINO release vs reference at {height}x{width}: max |diff| {diff:.2e}")
    assert diff < 1e-4
    assert not backbone.training and not any(p.requires_grad for p in backbone.parameters())


def test_timm_interpolation_differs_off_the_native_grid(dino_release):
    path, ref = dino_release
    backbone = vitssl.load_backbone(path)
    assert backbone.pos_interpolation == "dino"
    backbone.pos_interpolation = "timm"
    x = torch.randn(1, 3, 480, 640, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert max_diff(backbone.pooled(x), ref(x)) > 1e-3  # so the test above does test the formula
        y = torch.randn(1, 3, 224, 224)
        assert max_diff(backbone.pooled(y), ref(y)) < 1e-4  # both leave the native grid's embedding unchanged


def test_native_grid_keeps_the_embedding_itself():
    pos = torch.randn(1, 1 + 14 * 14, 8)
    assert dino_pos_embed(pos, (14, 14)) is pos
    assert dino_pos_embed(pos, (30, 40)).shape == (1, 1 + 30 * 40, 8)


def test_full_width_vit_small_16(tmp_path):
    ref = RefViT(depth=12).eval()  # ViT-S/16 as released: 384 wide, 12 blocks, 6 heads
    state = random_state(ref, seed=3, scale=0.05)
    ref.load_state_dict(state, strict=True)
    torch.save(state, tmp_path / "dino_deitsmall16_pretrain.pth")
    backbone = vitssl.load_backbone(tmp_path / "dino_deitsmall16_pretrain.pth")
    assert backbone.model.blocks[0].attn.num_heads == 6 and len(backbone.blocks()) == 12
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = max_diff(backbone.pooled(x), ref(x))
    print(f"DINO ViT-S/16 (12 blocks) vs reference at 224: max |diff| {diff:.2e}")
    assert diff < 1e-4


def test_training_checkpoint_takes_the_teacher(tmp_path, dino_release):
    path, ref = dino_release
    teacher = torch.load(path, weights_only=True)
    student = {k: v + 1 for k, v in teacher.items()}
    ckpt = {
        "teacher": {**{f"backbone.{k}": v for k, v in teacher.items()}, "head.mlp.0.weight": torch.zeros(8, 384)},
        "student": {f"module.backbone.{k}": v for k, v in student.items()}
        | {"module.head.last_layer.weight_g": torch.ones(8, 1)},
        "optimizer": {"state": {}},
        "epoch": 100,
    }
    torch.save(ckpt, tmp_path / "checkpoint.pth")
    backbone = vitssl.load_backbone(tmp_path / "checkpoint.pth")
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert max_diff(backbone.pooled(x), ref(x)) < 1e-4


def test_arch_override_is_checked(dino_release):
    path, _ = dino_release
    backbone = vitssl.load_backbone(path, arch="vit_small")
    assert backbone.embed_dim == 384
    with pytest.raises(vitssl.errors.VitsslError, match="do not fit"):
        vitssl.load_backbone(path, arch="vit_base")
