"""A short CPU training on synthetic_det learns to detect: AP50 clearly above zero (slow)."""

from __future__ import annotations

import json

import pytest

from vitssl.cli import main
from vitssl.detection.synthetic import ensure_synthetic_det


@pytest.mark.slow
def test_faster_rcnn_learns_on_synthetic_det(tiny_det_run, tmp_path):
    # A one-block ViT-Tiny (patch 4) from a one-epoch run on noise: this measures that the detection pipeline
    # learns (shapes from scratch in 80 steps), not the value of pretraining.
    data = ensure_synthetic_det(tmp_path / "cache", 64, 160, 48)
    args = ["detect", str(tiny_det_run), "--data", str(data), "--epochs", "4", "--lr", "1e-3", "--image-size", "64"]
    args += ["--fpn-channels", "64", "--batch-size", "8", "--device", "cpu"]
    assert main(args) == 0
    result = json.loads((tiny_det_run / "detect.json").read_text())["pretrained"]
    print(f"synthetic_det, 160 train / 48 val images, 4 epochs: {result}")
    # Measured AP50 15.4 with these settings (shared CPU, 80 steps, about 3 CPU-minutes).
    # A detector that has learned nothing scores AP50 ~0 here (10 classes, 1-4 small objects per image).
    assert result["ap50"] > 5.0
