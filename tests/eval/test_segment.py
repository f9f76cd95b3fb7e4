import json

import numpy as np
import pytest
import torch
from PIL import Image

from vitssl.cli import main
from vitssl.errors import VitsslError
from vitssl.eval.pairs import load_pairs
from vitssl.eval.segment import confusion, miou


def test_confusion_and_miou_by_hand():
    truth = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 0, 1]])
    conf = confusion(pred, truth, 3)
    assert conf.tolist() == [[1, 1, 0], [0, 3, 0], [1, 0, 1]]  # the ignored pixel is not counted
    mean, per_class = miou(conf)
    # IoU: class 0: 1 / (2 + 2 - 1) = 1/3; class 1: 3 / (4 + 3 - 3) = 3/4; class 2: 1 / (1 + 2 - 1) = 1/2
    assert per_class == pytest.approx([33.33, 75.0, 50.0], abs=0.01)
    assert mean == pytest.approx(100 * (1 / 3 + 3 / 4 + 1 / 2) / 3)


def test_miou_skips_absent_classes():
    conf = torch.tensor([[5, 0, 0], [0, 0, 0], [0, 0, 5]])
    assert miou(conf)[0] == 100.0


def _pairs_folder(root, n=12, size=20):
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        r, c = rng.integers(0, size // 2, 2)
        mask[r : r + size // 2, c : c + size // 2] = 1 + i % 2
        mask[0, 0] = 255  # ignored
        image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        image[mask == 1] = (220, 40, 40)
        image[mask == 2] = (40, 40, 220)
        Image.fromarray(image).save(root / "images" / f"im{i}.jpg")
        Image.fromarray(mask).save(root / "masks" / f"im{i}.png")
    (root / "images" / "no_mask.jpg").write_bytes((root / "images" / "im0.jpg").read_bytes())
    return root


def test_load_pairs_from_a_folder(tmp_path):
    root = _pairs_folder(tmp_path / "pairs")
    pairs = load_pairs(str(root), "train", 16, [0.5] * 3, [0.25] * 3)
    assert pairs.images.shape == (12, 3, 16, 16) and pairs.masks.shape == (12, 16, 16)  # no_mask.jpg is skipped
    assert pairs.num_classes == 3 and set(pairs.masks.unique().tolist()) <= {0, 1, 2, 255}
    binary = load_pairs(str(root), "train", 16, [0.5] * 3, [0.25] * 3, binary=True)
    assert binary.num_classes == 2


def test_load_pairs_explains_the_layout(tmp_path):
    with pytest.raises(VitsslError, match="images/ and masks/"):
        load_pairs(str(tmp_path), "train", 16, [0.5] * 3, [0.25] * 3)


def test_segment_command_on_folder_pairs(tiny_run, tmp_path, capsys):
    root = _pairs_folder(tmp_path / "pairs")
    args = ["segment", str(tiny_run), "--train", str(root), "--val", str(root), "--epochs", "15"]
    assert main([*args, "--lr", "0.05", "--batch-size", "4", "--device", "cpu", "--compare-init"]) == 0
    out = capsys.readouterr().out
    assert "at initialisation" in out and "pretrained" in out
    result = json.loads((tiny_run / "segment.json").read_text())
    assert result["pretrained"]["num_classes"] == 3
    # the colours give the classes away: a linear probe on any reasonable features must find them
    assert result["pretrained"]["miou"] > 50 and result["init"]["miou"] > 50
    assert (tiny_run / "segment_probe.pt").is_file()
