"""Learning test: a short self-supervised pretraining must give better frozen patch features for segmentation
than the same network at initialisation (the claim `vitssl segment` measures)."""

import json
from pathlib import Path

import pytest

from vitssl.cli import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def default_jitter_demo_run(tmp_path_factory, patch8_demo) -> Path:
    """The patch-8 demo recipe (ViT-Tiny/8, tests/conftest.py) with DINO's default colour jitter (6 epochs). The
    shipped demo's strong colour augmentation puts the [CLS] attention on the shapes but made the patch features
    worse for this probe (measured 59.92 -> 55.81 % mIoU), so this check keeps the recipe it was measured with."""
    out = tmp_path_factory.mktemp("segment_demo")
    args = ["pretrain", str(CONFIGS / "demo.yaml"), f"train.out_dir={out}", "train.progress=false"]
    args += [
        *patch8_demo,
        "train.knn_every=0",
        "crops.jitter_p=0.8",
        "crops.saturation=0.2",
        "crops.hue=0.1",
        "crops.grayscale_p=0.2",
    ]
    assert main(args) == 0
    return out


@pytest.mark.slow
def test_segmentation_probe_beats_initialisation(default_jitter_demo_run, capsys):
    run = default_jitter_demo_run
    assert main(["segment", str(run), "--compare-init", "--device", "cpu"]) == 0  # 2000 / 1000 pairs, 20 probe epochs
    result = json.loads((run / "segment.json").read_text())
    print(capsys.readouterr().out)
    # measured with one torch thread: 59.92 % at initialisation -> 61.31 % after 2 epochs, 64.19 % after 6
    assert result["pretrained"]["miou"] > result["init"]["miou"] + 0.5
