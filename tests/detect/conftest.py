"""Fixtures of the detection tests: tiny backbones, tiny hand-made COCO / VOC folders, a tiny pretrained run."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import TINY_OVERRIDES
from vitssl.cli import main
from vitssl.models.backbones import build_backbone


@pytest.fixture
def tiny_vit():
    """ViT-Tiny width, one block, 4 px patches (strides 2, 4, 8 and 16 in the pyramid)."""
    return build_backbone("vit_tiny", patch_size=4, img_size=32, depth=1)


@pytest.fixture
def tiny_swin():
    """The 32 px Swin preset: patch 2, window 4, three stages (strides 2, 4, 8)."""
    return build_backbone("swin_mini_32", img_size=32)


@pytest.fixture(scope="session")
def tiny_det_data(tmp_path_factory) -> Path:
    """A small synthetic_det copy (16 train, 8 test images of 64 px) with train/ and test/ COCO folders."""
    from vitssl.detection.synthetic import ensure_synthetic_det

    return ensure_synthetic_det(tmp_path_factory.mktemp("det_cache"), 64, 16, 8)


@pytest.fixture(scope="session")
def tiny_det_run(tiny_image_folder, tmp_path_factory) -> Path:
    """A one-epoch DINO run (ViT, 1 block, patch 4, 16 px crops) on the 24-image folder."""
    run = tmp_path_factory.mktemp("tiny_det_run") / "run"
    args = ["pretrain", f"data.train={tiny_image_folder}", f"train.out_dir={run}", "optim.epochs=1", *TINY_OVERRIDES]
    assert main(args) == 0
    return run
