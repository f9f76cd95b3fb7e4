"""The evaluation and picture commands on sources that are not vitssl runs: an authors' release file, a timm
name with a local file and a transformers ViTModel folder, with ImageNet's transform at --image-size."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch

from vitssl.cli import main


@pytest.fixture(scope="module")
def timm_source(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("timm_weights")
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, depth=1)
    torch.save(model.state_dict(), folder / "w.pth")
    return f"timm:vit_tiny_patch16_224@{folder / 'w.pth'}"


def test_knn_on_a_release_file_with_compare_init(tiny_release, tiny_image_folder, tmp_path, capsys):
    path, _ = tiny_release
    out = tmp_path / "knn.json"
    args = ["knn", str(path), "--train", str(tiny_image_folder), "--val", str(tiny_image_folder), "--k", "3"]
    assert (
        main(
            [*args, "--image-size", "16", "--device", "cpu", "--num-workers", "0", "--compare-init", "--out", str(out)]
        )
        == 0
    )
    results = json.loads(out.read_text())
    assert set(results) >= {"pretrained", "init"} and results["checkpoint"] == str(path)
    assert "weighted k-NN, pretrained" in capsys.readouterr().out


def test_attention_on_a_release_file(tiny_release, tmp_path):
    path, _ = tiny_release
    out = tmp_path / "maps"
    assert main(["attention", str(path), "synthetic", "--out", str(out), "--device", "cpu"]) == 0
    maps = sorted(out.glob("*_attention.npy"))
    assert len(maps) == 10 and np.load(maps[0]).shape[0] == 1  # one 64-wide head


def test_attention_and_knn_on_a_timm_name(timm_source, tiny_image_folder, tmp_path):
    out = tmp_path / "maps"
    assert main(["attention", timm_source, "synthetic", "--out", str(out), "--device", "cpu", "--resize", "32"]) == 0
    assert len(list(out.glob("*_attention.png"))) == 10
    knn = ["knn", timm_source, "--train", str(tiny_image_folder), "--val", str(tiny_image_folder), "--k", "3"]
    assert (
        main([*knn, "--image-size", "32", "--device", "cpu", "--num-workers", "0", "--out", str(tmp_path / "k.json")])
        == 0
    )


def test_knn_and_attention_on_an_hf_folder(tiny_image_folder, tmp_path):
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=16, patch_size=4
    )
    ViTModel(config).save_pretrained(tmp_path / "hf")
    source = f"hf:{tmp_path / 'hf'}"
    knn = ["knn", source, "--train", str(tiny_image_folder), "--val", str(tiny_image_folder), "--k", "3"]
    assert main([*knn, "--device", "cpu", "--num-workers", "0", "--out", str(tmp_path / "k.json")]) == 0
    assert main(["attention", source, "synthetic", "--out", str(tmp_path / "maps"), "--device", "cpu"]) == 0


def test_embed_and_pca_on_a_release_file(tiny_release, tiny_image_folder, tmp_path):
    path, _ = tiny_release
    assert (
        main(
            [
                "embed",
                str(path),
                str(tiny_image_folder),
                "--out",
                str(tmp_path / "f.npy"),
                "--image-size",
                "16",
                "--device",
                "cpu",
                "--num-workers",
                "0",
            ]
        )
        == 0
    )
    assert np.load(tmp_path / "f.npy").shape == (24, 64)
    assert main(["pca", str(path), "synthetic", "--out", str(tmp_path / "pca.png"), "--device", "cpu"]) == 0


def test_a_bad_source_is_one_line(tmp_path, capsys):
    (tmp_path / "junk.pth").write_bytes(b"junk")
    assert main(["knn", str(tmp_path / "junk.pth"), "--device", "cpu"]) != 0
    err = capsys.readouterr().err.strip()
    assert "could not read" in err and len(err.splitlines()) == 1


def test_attention_on_a_folder_of_photos(tiny_release, tiny_image_folder, tmp_path):
    path, _ = tiny_release
    out = tmp_path / "maps"
    assert main(["attention", str(path), str(tiny_image_folder), "--out", str(out), "--device", "cpu"]) == 0
    assert len(list(out.glob("*_attention.png"))) == 24
