"""``vitssl detect`` end to end on a tiny run and tiny data (a smoke test, not a learning test), then the report."""

from __future__ import annotations

import json

import torch

from vitssl.cli import main


def test_detect_command_writes_results_weights_picture_and_report(tiny_det_run, tiny_det_data, capsys):
    args = ["detect", str(tiny_det_run), "--data", str(tiny_det_data), "--epochs", "1", "--max-train", "8"]
    args += ["--max-val", "4", "--batch-size", "4", "--image-size", "32", "--fpn-channels", "32", "--device", "cpu"]
    assert main([*args, "--compare-init", "--detector", "fcos"]) == 0
    out = capsys.readouterr().out
    assert "pretrained" in out and "at initialisation" in out and "AP50" in out
    result = json.loads((tiny_det_run / "detect.json").read_text())
    for net in ("pretrained", "init"):
        assert {"ap", "ap50", "ap75", "final_loss", "steps"} <= set(result[net])
        assert 0 <= result[net]["ap50"] <= 100
    assert result["detector"] == "fcos" and result["train_images"] == 8 and result["val_images"] == 4
    saved = torch.load(tiny_det_run / "detector.pt", weights_only=True)
    assert saved["class_names"][0] == "circle" and "state_dict" in saved
    assert (tiny_det_run / "detect_predictions.png").stat().st_size > 1000
    assert main(["report", str(tiny_det_run)]) == 0
    page = (tiny_det_run / "report" / "index.html").read_text()
    assert "detect.json" in page and "box AP %" in page and "pic_detect_predictions.png" in page
