"""``vitssl embed``: one unit-norm row per image, in the sorted order of the relative paths, with the index."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vitssl.cli import main
from vitssl.data.build import eval_transform
from vitssl.data.images import load_rgb


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed_images")
    rng = np.random.default_rng(0)
    names = ["b.png", "a.jpg", "sub/c.png", "sub/deeper/d.png", ".hidden/e.png"]
    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        size = (20 + 3 * i, 16 + 5 * i, 3)  # differing sizes: the eval transform makes them alike
        Image.fromarray(rng.integers(0, 256, size=size, dtype=np.uint8)).save(root / name)
    (root / "notes.txt").write_text("not an image")
    return root


def test_embed_writes_one_unit_row_per_image_in_order(runs, reference, folder, tmp_path):
    out = tmp_path / "emb"
    args = ["embed", str(runs["vit"]), str(folder), "--out", str(out), "--batch-size", "3", "--tokens"]
    assert main([*args, "--device", "cpu", "--num-workers", "0"]) == 0
    index = json.loads((tmp_path / "emb.json").read_text())
    assert index["paths"] == ["a.jpg", "b.png", "sub/c.png", "sub/deeper/d.png"]  # sorted; hidden skipped
    feats = np.load(tmp_path / "emb.npy", mmap_mode="r")
    assert feats.shape == (4, 192) and feats.dtype == np.float32 and index["dim"] == 192
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    cfg, backbone = reference("vit")
    with torch.no_grad():  # row 2 is sub/c.png, embedded on its own
        x = eval_transform(cfg)(load_rgb(folder / "sub" / "c.png"))[None]
        expected = F.normalize(backbone(x).pooled, dim=-1)[0].numpy()
        tokens = backbone(x).tokens[0].numpy()
    np.testing.assert_allclose(feats[2], expected, atol=1e-5)
    stored = np.load(tmp_path / "emb.tokens.npy", mmap_mode="r")
    assert stored.shape == (4, 16, 192)
    np.testing.assert_allclose(stored[2], tokens, atol=1e-5)


def test_embed_image_files_and_errors_are_one_line(runs, folder, tmp_path, capsys):
    out = tmp_path / "two.npy"
    files = [str(folder / "b.png"), str(folder / "a.jpg")]
    assert main(["embed", str(runs["sit"]), *files, "--out", str(out), "--num-workers", "0"]) == 0
    assert json.loads((tmp_path / "two.json").read_text())["paths"] == files  # the order given
    assert np.load(out).shape == (2, 192)
    capsys.readouterr()
    for bad in ([str(tmp_path / "missing")], [str(folder / "notes.txt")]):
        assert main(["embed", str(runs["vit"]), *bad, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("vitssl: error:") and "\n" not in err and "Traceback" not in err
