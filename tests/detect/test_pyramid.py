"""The detection adapters: pyramid geometry for ViT and Swin at several input sizes, freezing, lr groups."""

from __future__ import annotations

import math

import pytest
import torch

from vitssl.detection.model import SwinFPN, ViTSimplePyramid, build_detector, build_pyramid
from vitssl.detection.train import DetectSettings, param_groups
from vitssl.errors import VitsslError
from vitssl.models.backbones import build_backbone

SIZES = [(32, 32), (64, 48), (37, 51), (20, 70)]  # square, non-square, not multiples of the patch or window


def _expected(h: int, w: int, stride: int, divisible: int) -> tuple[int, int]:
    ph, pw = math.ceil(h / divisible) * divisible, math.ceil(w / divisible) * divisible
    return ph // stride, pw // stride


@pytest.mark.parametrize("size", SIZES)
def test_vit_simple_pyramid_shapes(tiny_vit, size):
    pyramid = build_pyramid(tiny_vit, 32)
    assert isinstance(pyramid, ViTSimplePyramid)
    assert pyramid.strides == [2, 4, 8, 16]  # patch 4: the stride-1 (4x) level is left out
    out = pyramid(torch.zeros(2, 3, *size))
    assert list(out) == ["0", "1", "2", "pool"]
    for fmap, stride in zip(out.values(), pyramid.strides, strict=True):
        assert fmap.shape == (2, 32, *_expected(*size, stride, pyramid.size_divisible))


def test_vit_patch16_gives_vitdet_strides():
    body = build_backbone("vit_tiny", img_size=64, depth=1)
    pyramid = build_pyramid(body, 16)
    assert pyramid.strides == [4, 8, 16, 32, 64] and pyramid.size_divisible == 64
    out = pyramid(torch.zeros(1, 3, 100, 70))  # padded to 128 x 128
    assert [tuple(f.shape[-2:]) for f in out.values()] == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]


@pytest.mark.parametrize("size", SIZES)
def test_swin_fpn_shapes(tiny_swin, size):
    pyramid = build_pyramid(tiny_swin, 32)
    assert isinstance(pyramid, SwinFPN)
    assert pyramid.strides == [2, 4, 8, 16]
    out = pyramid(torch.zeros(1, 3, *size))
    assert list(out) == ["0", "1", "2", "pool"]
    for fmap, stride in zip(out.values(), pyramid.strides, strict=True):
        assert fmap.shape == (1, 32, *_expected(*size, stride, pyramid.size_divisible))


def test_frozen_body_gets_no_gradient_and_stays_in_eval(tiny_vit):
    pyramid = build_pyramid(tiny_vit, 16).freeze()
    pyramid.train()
    assert not pyramid.body.training and pyramid.branches.training
    sum(f.sum() for f in pyramid(torch.rand(1, 3, 32, 32)).values()).backward()
    assert all(p.grad is None for p in pyramid.body.parameters())
    assert all(p.grad is not None for p in pyramid.outputs.parameters())


def test_layer_decay_groups(tiny_vit):
    body = build_backbone("vit_tiny", patch_size=4, img_size=32, depth=2)
    pyramid = build_pyramid(body, 16).unfreeze()
    model = build_detector(pyramid, "faster_rcnn", 2, 32, [0.5] * 3, [0.25] * 3)
    groups = param_groups(model, pyramid, DetectSettings(layer_decay=0.5))
    scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    blocks = body.model.blocks
    assert scale[id(body.model.patch_embed.proj.weight)] == 0.5**3  # embeddings: decay^(L + 1)
    assert scale[id(blocks[0].mlp.fc1.weight)] == 0.5**2
    assert scale[id(blocks[1].mlp.fc1.weight)] == 0.5
    assert scale[id(body.model.norm.weight)] == 1.0
    assert scale[id(model.roi_heads.box_predictor.cls_score.weight)] == 1.0
    no_wd = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert id(body.model.pos_embed) in no_wd and id(blocks[0].mlp.fc1.bias) in no_wd


def test_swin_patch_merging_decays_with_its_stage(tiny_swin):
    pyramid = build_pyramid(tiny_swin, 16).unfreeze()
    groups = param_groups(pyramid, pyramid, DetectSettings(layer_decay=0.5))
    scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    stage1 = tiny_swin.model.layers[1]
    merge = next(stage1.downsample.parameters())
    assert scale[id(merge)] == scale[id(next(stage1.blocks[0].parameters()))]


def test_bad_pyramid_width_is_a_one_line_error(tiny_vit):
    with pytest.raises(VitsslError, match="at least 8 channels"):
        build_pyramid(tiny_vit, 4)
    with pytest.raises(VitsslError, match="multiple of 32"):
        build_detector(build_pyramid(tiny_vit, 16), "fcos", 2, 32, [0.5] * 3, [0.25] * 3)
