"""Learning test: a short self-supervised pretraining must give better frozen patch features for segmentation
than the same network at initialisation (the claim `vitssl segment` measures)."""

import json
from pathlib import Path

import pytest

from vitssl.cli import main


@pytest.mark.slow
def test_segmentation_probe_beats_initialisation(dino_demo_run, capsys):
    """On the session's shared DINO demo run (6 epochs; tests/conftest.py)."""
    run = Path(dino_demo_run.trainer.cfg.train.out_dir)
    assert main(["segment", str(run), "--device", "cpu"]) == 0  # 2000 / 1000 pairs, 20 probe epochs
    result = json.loads((run / "segment.json").read_text())
    print(capsys.readouterr().out)
    # measured with one torch thread: 59.92 % at initialisation -> 61.31 % after 2 epochs, 64.19 % after 6
    assert result["pretrained"]["miou"] > result["init"]["miou"] + 0.5
