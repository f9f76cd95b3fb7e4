"""Backbone token masks: masked patch embeddings become the learned mask token (plus the position embedding for
a ViT), the others and every unmasked forward stay as they were, and backbones without masks keep their keys."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from vitssl.errors import VitsslError
from vitssl.models import build_backbone
from vitssl.models.backbones import Backbone


def vit(mask_token: bool = True) -> Backbone:
    torch.manual_seed(0)
    return build_backbone("vit_tiny", patch_size=4, img_size=16, depth=1, mask_token=mask_token).eval()


def swin(mask_token: bool = True) -> Backbone:
    torch.manual_seed(0)
    return build_backbone("swin_mini_32", img_size=32, mask_token=mask_token).eval()


def first_block_input(backbone: Backbone, images: Tensor, masks: Tensor | None) -> Tensor:
    """The tokens the first transformer block receives (ViT: after the position embedding)."""
    seen: list[Tensor] = []
    handle = backbone.blocks()[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        backbone(images, masks)
    finally:
        handle.remove()
    return seen[0]


def random_masks(batch: int, rows: int, cols: int, seed: int = 1) -> Tensor:
    masks = torch.rand(batch, rows, cols, generator=torch.Generator().manual_seed(seed)) < 0.5
    masks[0, 0, 0], masks[0, 0, 1] = True, False  # at least one masked and one kept token
    return masks


def test_vit_masked_tokens_are_the_mask_token_plus_position_and_the_rest_is_unchanged():
    backbone = vit()
    with torch.no_grad():
        backbone.mask_token.normal_()  # distinct from any patch embedding
    images = torch.randn(2, 3, 16, 16)
    masks = random_masks(2, 4, 4)
    plain = first_block_input(backbone, images, None)
    masked = first_block_input(backbone, images, masks)
    prefix = backbone.num_prefix_tokens
    pos = backbone.model.pos_embed[0, prefix:]  # native 16 px size: no interpolation
    flat = masks.flatten(1)
    expected = (backbone.mask_token + pos).expand(2, -1, -1)
    torch.testing.assert_close(masked[:, prefix:][flat], expected[flat])
    torch.testing.assert_close(masked[:, prefix:][~flat], plain[:, prefix:][~flat], rtol=0, atol=0)
    torch.testing.assert_close(masked[:, :prefix], plain[:, :prefix], rtol=0, atol=0)  # [CLS] untouched


def test_swin_masked_patch_embeddings_are_the_mask_token():
    backbone = swin()
    with torch.no_grad():
        backbone.mask_token.normal_()
    images = torch.randn(2, 3, 32, 32)
    masks = random_masks(2, 16, 16)
    plain = first_block_input(backbone, images, None)
    masked = first_block_input(backbone, images, masks)
    torch.testing.assert_close(masked[masks], backbone.mask_token.expand(int(masks.sum()), -1))
    torch.testing.assert_close(masked[~masks], plain[~masks], rtol=0, atol=0)


@pytest.mark.parametrize("build", [vit, swin])
def test_flat_masks_are_row_major_grids_and_an_empty_mask_changes_nothing(build):
    backbone = build()
    images = torch.randn(2, 3, *(16, 16) if build is vit else (32, 32))
    rows, cols = backbone(images).grid if build is vit else (16, 16)  # Swin masks the 16x16 patch grid
    masks = random_masks(2, rows, cols)
    grid_out, flat_out = backbone(images, masks), backbone(images, masks.flatten(1))
    torch.testing.assert_close(grid_out.tokens, flat_out.tokens, rtol=0, atol=0)
    none, empty = backbone(images), backbone(images, torch.zeros_like(masks))
    torch.testing.assert_close(empty.tokens, none.tokens, rtol=0, atol=0)
    assert not torch.equal(grid_out.pooled, none.pooled)  # the masks reach the output


def test_without_masks_the_forward_and_state_dict_are_those_of_a_backbone_without_a_mask_token():
    with_token, without = vit(mask_token=True), vit(mask_token=False)
    images = torch.randn(2, 3, 16, 16)
    a, b = with_token(images), without(images)
    torch.testing.assert_close(a.tokens, b.tokens, rtol=0, atol=0)
    torch.testing.assert_close(a.pooled, without.model.forward_features(images)[:, 0], rtol=0, atol=0)
    assert set(with_token.state_dict()) == set(without.state_dict()) | {"mask_token"}
    assert all(key.startswith("model.") for key in without.state_dict())
    without.load_state_dict(vit(mask_token=False).state_dict(), strict=True)  # older checkpoints load strictly


def test_the_mask_token_learns_from_the_masked_positions_only():
    backbone = vit()
    images, weights = torch.randn(2, 3, 16, 16), torch.randn(192)  # the sum of a LayerNorm output has no gradient
    (backbone(images).pooled @ weights).sum().backward()
    assert backbone.mask_token.grad is None
    (backbone(images, random_masks(2, 4, 4)).pooled @ weights).sum().backward()
    assert backbone.mask_token.grad is not None and backbone.mask_token.grad.abs().sum() > 0


def test_masks_are_refused_without_a_mask_token_or_with_the_wrong_shape():
    images = torch.randn(2, 3, 16, 16)
    with pytest.raises(VitsslError, match="mask_token=True"):
        vit(mask_token=False)(images, torch.zeros(2, 4, 4, dtype=torch.bool))
    with pytest.raises(VitsslError, match="do not fit the"):
        vit()(images, torch.zeros(2, 3, 5, dtype=torch.bool))
    with pytest.raises(VitsslError, match="must be boolean"):
        vit()(images, torch.zeros(2, 4, 4))
    # a failed masked call leaves no hook behind
    backbone = vit()
    with pytest.raises(VitsslError):
        backbone(images, torch.zeros(2, 16 + 1, dtype=torch.bool))
    assert not backbone.model.patch_embed._forward_hooks
