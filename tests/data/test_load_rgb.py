"""load_rgb: every odd PIL mode arrives as 8-bit RGB with the right values; bad files raise clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitssl.data.images import UnreadableImageError, is_image_file, load_rgb, to_rgb


def _roundtrip(image: Image.Image, path: Path) -> np.ndarray:
    image.save(path)
    loaded = load_rgb(path)
    assert loaded.mode == "RGB"
    assert loaded.size == image.size
    return np.asarray(loaded).astype(int)


def _grey(values: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(values)[..., None], 3, axis=-1)


def test_extensions_are_case_insensitive() -> None:
    assert is_image_file("a/B.JPG") and is_image_file("x.Tiff") and is_image_file("y.pgm")
    assert not is_image_file("notes.txt") and not is_image_file("jpg")


def test_grey_l(tmp_path: Path) -> None:
    values = np.array([[0, 100, 255]], dtype=np.uint8)
    assert (_roundtrip(Image.fromarray(values), tmp_path / "l.png") == _grey(values)).all()


def test_one_bit(tmp_path: Path) -> None:
    image = Image.fromarray(np.array([[0, 255, 0]], dtype=np.uint8)).convert("1")
    assert (_roundtrip(image, tmp_path / "one.png") == _grey([[0, 255, 0]])).all()


def test_palette(tmp_path: Path) -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    image.putdata([0, 1])
    assert (_roundtrip(image, tmp_path / "p.png") == [[[10, 20, 30], [200, 100, 50]]]).all()


def test_palette_with_transparency_is_white(tmp_path: Path) -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    image.putdata([0, 1])
    image.info["transparency"] = 0  # the black entry is fully transparent
    for name in ("pt.png", "pt.gif"):
        assert (_roundtrip(image, tmp_path / name) == [[[255, 255, 255], [200, 100, 50]]]).all()


def test_rgba_composites_over_white(tmp_path: Path) -> None:
    pixels = np.array([[[255, 0, 0, 0], [255, 0, 0, 255], [0, 0, 255, 128]]], dtype=np.uint8)
    rgb = _roundtrip(Image.fromarray(pixels, mode="RGBA"), tmp_path / "rgba.png")
    # alpha 128: 0 * 128/255 + 255 * 127/255 = 127 (to within rounding).
    expected = np.array([[[255, 255, 255], [255, 0, 0], [127, 127, 255]]])
    assert np.abs(rgb - expected).max() <= 1


def test_la_composites_over_white(tmp_path: Path) -> None:
    pixels = np.array([[[0, 0], [50, 255]]], dtype=np.uint8)
    rgb = _roundtrip(Image.fromarray(pixels, mode="LA"), tmp_path / "la.png")
    assert (rgb == [[[255, 255, 255], [50, 50, 50]]]).all()


def test_cmyk(tmp_path: Path) -> None:
    image = Image.new("CMYK", (3, 1))
    image.putdata([(0, 0, 0, 0), (255, 0, 0, 0), (0, 0, 0, 255)])
    assert (_roundtrip(image, tmp_path / "cmyk.tif") == [[[255, 255, 255], [0, 255, 255], [0, 0, 0]]]).all()


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    rgb = _roundtrip(Image.fromarray(values), tmp_path / "i16.png")
    assert (rgb == _grey([[0, 1, 128, 255]])).all()


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_sixteen_bit_modes(mode: str) -> None:
    dtype = "<u2" if mode == "I;16" else ">u2"
    values = np.array([[0, 1000, 65535]], dtype=dtype)
    image = Image.frombytes(mode, (3, 1), values.tobytes())
    assert image.mode == mode
    # 1000 * 255 / 65535 = 3.89 -> 4
    assert (np.asarray(to_rgb(image)) == _grey([[0, 4, 255]])).all()


def test_int32_wide_values_scale_and_small_values_stay(tmp_path: Path) -> None:
    wide = Image.fromarray(np.array([[0, 1000, 65535]], dtype=np.int32))
    assert wide.mode == "I"
    assert (np.asarray(to_rgb(wide)) == _grey([[0, 4, 255]])).all()
    narrow = Image.fromarray(np.array([[0, 17, 255]], dtype=np.int32))
    assert (np.asarray(to_rgb(narrow)) == _grey([[0, 17, 255]])).all()
    # Outside 0..65535 no fixed range applies: min-max, so 100 -> (100 + 100) / 1000 * 255 = 51.
    signed = Image.fromarray(np.array([[-100, 100, 900]], dtype=np.int32))
    assert (np.asarray(to_rgb(signed)) == _grey([[0, 51, 255]])).all()


def test_float_image(tmp_path: Path) -> None:
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert unit.mode == "F"
    assert (_roundtrip(unit, tmp_path / "f.tif") == _grey([[0, 128, 255]])).all()
    byte_range = Image.fromarray(np.array([[0.0, 100.0, 255.0]], dtype=np.float32))
    assert (np.asarray(to_rgb(byte_range)) == _grey([[0, 100, 255]])).all()


def test_rgb_is_unchanged(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert (_roundtrip(Image.fromarray(pixels), tmp_path / "rgb.png") == pixels).all()


@pytest.mark.parametrize(
    ("kind", "name"),
    [("garbage", "g.jpg"), ("truncated", "t.jpg"), ("text", "n.png"), ("empty", "e.png")],
)
def test_unreadable_files_raise_naming_the_file(tmp_path: Path, make_corrupt, kind: str, name: str) -> None:
    path = make_corrupt(tmp_path / name, kind)
    with pytest.raises(UnreadableImageError, match=name):
        load_rgb(path)


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(UnreadableImageError, match="nope.png"):
        load_rgb(tmp_path / "nope.png")
