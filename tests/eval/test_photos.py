"""`vitssl attention` and `vitssl pca` on a user's photos: their own resolution and aspect ratio, capped by
--max-side, cropped to whole patches; folders of photos; per-head pictures and masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_OVERRIDES
from vitssl.cli import main
from vitssl.eval.images import fit_size

HEADS = 3  # vit_tiny


@pytest.fixture(scope="module")
def patch16_run(tiny_image_folder, tmp_path_factory) -> Path:
    """A one-epoch DINO run of a one-block ViT with 16 px patches (32 px crops), the patch of the usual presets."""
    run = tmp_path_factory.mktemp("patch16_run") / "run"
    overrides = [o for o in TINY_OVERRIDES if not o.startswith(("model.patch_size", "crops."))]
    args = [
        "pretrain",
        f"data.train={tiny_image_folder}",
        f"train.out_dir={run}",
        "optim.epochs=1",
        "model.patch_size=16",
        "crops.global_size=32",
        "crops.local_size=16",
        "crops.local_count=2",
        *overrides,
    ]
    assert main(args) == 0
    return run


def _photo(path: Path, width: int, height: int) -> Path:
    """A smooth colour photo (PIL sizes are width x height) with a bright disc, so that it is no flat field."""
    yy, xx = np.mgrid[0:height, 0:width]
    disc = ((xx - width * 0.6) ** 2 + (yy - height * 0.4) ** 2) < (min(width, height) / 4) ** 2
    pixels = np.stack([xx * 255 // width, yy * 255 // height, np.where(disc, 250, 30)], axis=-1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def test_fit_size_caps_the_longer_side_and_resize_takes_precedence():
    assert fit_size(1200, 900, max_side=800) == (800, 600)
    assert fit_size(900, 1200, max_side=800) == (600, 800)
    assert fit_size(640, 480, max_side=800) == (640, 480)  # never scaled up
    assert fit_size(1200, 900, resize=300, max_side=800) == (400, 300)  # --resize sets the short side instead
    assert fit_size(100, 50, resize=200, max_side=80) == (400, 200)


def test_attention_on_photos_at_their_own_resolution(patch16_run, tmp_path, capsys):
    _photo(tmp_path / "photos" / "street.png", 640, 480)  # 480 high, 640 wide
    _photo(tmp_path / "photos" / "holiday" / "beach.jpg", 1200, 900)
    out = tmp_path / "out"
    assert main(["attention", str(patch16_run), str(tmp_path / "photos"), "--out", str(out), "--device", "cpu"]) == 0
    assert "30x40 patches" in capsys.readouterr().out
    # 480x640 at patch 16: 30 rows x 40 columns, the photo's own resolution
    assert np.load(out / "street_attention.npy").shape == (HEADS, 30, 40)
    # 900x1200 with the default --max-side 800: scaled to 600x800, cropped to 592x800: 37 rows x 50 columns
    maps = np.load(out / "beach_attention.npy")
    assert maps.shape == (HEADS, 37, 50)
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), np.ones(HEADS), rtol=1e-4)
    masks = np.load(out / "beach" / "masks.npy")
    assert masks.shape == (HEADS + 1, 37, 50) and masks.dtype == bool
    assert 0 < masks.sum() < masks.size
    for name in [f"head{i}" for i in range(HEADS)] + ["mean"]:
        with Image.open(out / "beach" / f"{name}.png") as im:
            assert im.size == (800, 592) and im.mode == "RGB"
        with Image.open(out / "beach" / f"{name}_mask.png") as im:
            mask = np.asarray(im)
        assert mask.shape == (592, 800) and set(np.unique(mask)) <= {0, 255}
    # the mask picture is the grid mask, each patch a 16 px block
    np.testing.assert_array_equal(mask[::16, ::16] == 255, masks[-1])
    with Image.open(out / "beach" / "image.png") as im:
        assert im.size == (800, 592)
    assert (out / "beach_attention.png").stat().st_size > 3000


def test_attention_resize_overrides_max_side(patch16_run, tmp_path):
    photo = _photo(tmp_path / "wide.png", 1200, 900)
    out = tmp_path / "out"
    args = ["attention", str(patch16_run), str(photo), "--resize", "320", "--max-side", "100", "--out", str(out)]
    assert main([*args, "--device", "cpu"]) == 0
    assert np.load(out / "wide_attention.npy").shape == (HEADS, 20, 26)  # 320 x 427 -> 320 x 416


def test_pca_on_photos_at_their_own_resolution(patch16_run, tmp_path):
    small = _photo(tmp_path / "street.png", 640, 480)
    large = _photo(tmp_path / "beach.png", 1200, 900)
    out = tmp_path / "pca.png"
    assert main(["pca", str(patch16_run), str(small), "--out", str(out), "--device", "cpu"]) == 0
    assert np.load(out.with_suffix(".npy")).shape == (1, 30, 40, 3)
    assert main(["pca", str(patch16_run), str(large), "--out", str(out), "--device", "cpu"]) == 0
    assert np.load(out.with_suffix(".npy")).shape == (1, 37, 50, 3)
    assert main(["pca", str(patch16_run), str(large), "--max-side", "320", "--out", str(out), "--device", "cpu"]) == 0
    assert np.load(out.with_suffix(".npy")).shape == (1, 15, 20, 3)  # 240 x 320


def test_a_folder_without_photos_is_one_line(patch16_run, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no photos here")
    assert main(["attention", str(patch16_run), str(tmp_path / "empty"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vitssl: error: folder") and "holds no image files" in err and "\n" not in err
