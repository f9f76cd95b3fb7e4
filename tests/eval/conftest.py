"""Fixtures of the evaluation tests: tiny pretrained runs, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import TINY_OVERRIDES
from vitssl.cli import main


@pytest.fixture(scope="session")
def tiny_run(tiny_image_folder, tmp_path_factory) -> Path:
    """A one-epoch DINO run (ViT, 1 block, patch 4, 16 px crops) on the 24-image folder, with data.val set."""
    run = tmp_path_factory.mktemp("tiny_eval_run") / "run"
    args = [
        "pretrain",
        f"data.train={tiny_image_folder}",
        f"data.val={tiny_image_folder}",
        f"train.out_dir={run}",
        "optim.epochs=1",
        "model.depth=2",
        "train.log_every=1",
        *TINY_OVERRIDES,
    ]
    assert main(args) == 0
    return run
