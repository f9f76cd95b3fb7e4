"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    """``$VITSSL_TEST_DATA/cifar10`` (with train/ and test/ class folders); skips when the variable is unset.

    Set but missing is a failure, not a skip: a CI job that means to test on real data must not pass silently.
    """
    base = os.environ.get("VITSSL_TEST_DATA")
    if not base:
        pytest.skip("VITSSL_TEST_DATA is not set (the folder holding cifar10/train and cifar10/test)")
    root = Path(base) / "cifar10"
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        pytest.fail(f"VITSSL_TEST_DATA={base}, but {root}/train and {root}/test are not both folders")
    return root


@pytest.fixture(scope="session")
def tiny_image_folder(tmp_path_factory) -> Path:
    """24 small random labelled images in 2 classes (root/<class>/<i>.png)."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("tiny_images")
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir()
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, size=(20, 20, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


TINY_OVERRIDES = [
    "data.batch_size=4",
    "data.num_workers=0",
    "model.backbone=vit_tiny",
    "model.patch_size=4",
    "model.depth=1",
    "crops.global_size=16",
    "crops.local_size=8",
    "crops.local_count=2",
    "dino.out_dim=16",
    "dino.hidden_dim=16",
    "dino.bottleneck_dim=8",
    "train.progress=false",
]
