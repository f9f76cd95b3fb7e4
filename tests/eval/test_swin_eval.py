"""The evaluation commands on a tiny EsViT run with a Swin backbone (no [CLS] token, multi-stage)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_OVERRIDES
from vitssl.cli import main

TINY_SWIN = ["method=esvit", "model.backbone=swin_mini_32", "model.patch_size=null", "model.depth=null"]


@pytest.fixture(scope="module")
def swin_run(tiny_image_folder, tmp_path_factory):
    run = tmp_path_factory.mktemp("swin") / "run"
    args = ["pretrain", f"data.train={tiny_image_folder}", f"data.val={tiny_image_folder}", f"train.out_dir={run}"]
    assert main([*args, "optim.epochs=1", *TINY_OVERRIDES, *TINY_SWIN]) == 0
    return run


def test_linear_fast_uses_token_means_of_the_last_four_blocks(swin_run, capsys):
    assert main(["linear", str(swin_run), "--fast", "--epochs", "2", "--num-workers", "0", "--device", "cpu"]) == 0
    result = json.loads((swin_run / "linear_fast.json").read_text())
    # swin_mini_32: widths 48, 96, 192 with 2 blocks each: the last 4 blocks are 96 + 96 + 192 + 192 wide
    assert result["n_last_blocks"] == 4 and result["feature_dim"] == 96 + 96 + 192 + 192


def test_attention_of_a_patch_query(swin_run, tmp_path):
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 35, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "att"
    assert main(["attention", str(swin_run), str(image), "--query", "1,2", "--out", str(out), "--device", "cpu"]) == 0
    maps = np.load(out / "photo_attention.npy")
    assert maps.shape == (8, 5, 4)  # 8 heads in the last stage; 40 x 32 px at stride 8
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    assert main(["attention", str(swin_run), str(image), "--query", "9,9", "--device", "cpu"]) == 2


def test_pca_segment_and_finetune_run(swin_run, tmp_path):
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(image)
    assert (
        main(["pca", str(swin_run), str(image), str(image), "--out", str(tmp_path / "p.png"), "--device", "cpu"]) == 0
    )
    assert np.load(tmp_path / "p.npy").shape == (2, 4, 4, 3)
    args = ["segment", str(swin_run), "--max-train", "40", "--max-val", "20", "--epochs", "2", "--device", "cpu"]
    assert main(args) == 0
    assert json.loads((swin_run / "segment.json").read_text())["pretrained"]["num_classes"] == 2
    args = ["finetune", str(swin_run), "--epochs", "1", "--batch-size", "8", "--num-workers", "0", "--device", "cpu"]
    assert main(args) == 0
    saved = torch.load(swin_run / "finetuned.pt", weights_only=True)
    assert any(k.startswith("layers.2.blocks.1.attn") for k in saved["backbone"])
