import pytest
import torch

from vitssl.errors import VitsslError
from vitssl.models import build_backbone


@pytest.fixture(scope="module")
def tiny():
    return build_backbone("vit_tiny", patch_size=4, img_size=32, depth=2)


def test_features_for_several_crop_sizes(tiny):
    for size, grid in ((32, (8, 8)), (16, (4, 4)), (24, (6, 6))):
        f = tiny(torch.randn(2, 3, size, size))
        assert f.pooled.shape == (2, 192)
        assert f.tokens.shape == (2, grid[0] * grid[1], 192)
        assert f.grid == grid


def test_parameters_keep_timm_names(tiny):
    names = {n for n, _ in tiny.named_parameters()}
    assert "model.cls_token" in names and "model.blocks.0.attn.qkv.weight" in names


def test_last_attention_rows_sum_to_one(tiny):
    attn = tiny.last_attention(torch.randn(2, 3, 32, 32))
    assert attn.shape == (2, 3, 65, 65)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 3, 65))


def test_unknown_backbone_suggests_a_name():
    with pytest.raises(VitsslError, match="did you mean vit_tiny"):
        build_backbone("vit_tinyy")


def test_any_timm_vit_name_works():
    b = build_backbone("vit_small_patch16_224", img_size=32, patch_size=8, depth=1)
    assert b.embed_dim == 384 and b.patch_size == 8


def test_vit_mini_preset_is_half_of_vit_tiny_wide():
    backbone = build_backbone("vit_mini", patch_size=8, img_size=32, depth=4)
    assert backbone.embed_dim == 96 and backbone.model.blocks[0].attn.num_heads == 3
    assert backbone(torch.zeros(2, 3, 32, 32)).tokens.shape == (2, 16, 96)
