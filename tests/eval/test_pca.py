import numpy as np
import pytest
import torch
from PIL import Image

from vitssl.cli import main
from vitssl.errors import VitsslError
from vitssl.eval.pca import pca_rgb


def _two_region_tokens(n_images=3, rows=6, cols=6, dim=16):
    """Border patches near one centre (background), inner patches near two others (two object parts)."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, dim, generator=g) * 4
    maps, inner = [], torch.zeros(rows, cols, dtype=torch.bool)
    inner[1:-1, 1:-1] = True
    part = torch.zeros(rows, cols, dtype=torch.long)
    part[1:-1, 1:-1] = 1
    part[1:-1, cols // 2 : -1] = 2
    for _ in range(n_images):
        maps.append(centres[part] + 0.3 * torch.randn(rows, cols, dim, generator=g))
    return maps, inner


def test_pca_shapes_range_and_background():
    tokens, inner = _two_region_tokens()
    result = pca_rgb(tokens)
    assert len(result.colours) == 3 and result.colours[0].shape == (6, 6, 3)
    for colours, fg in zip(result.colours, result.foreground, strict=True):
        assert colours.min() >= 0.0 and colours.max() <= 1.0
        assert np.array_equal(fg, inner.numpy())  # the border cluster is found as background
        assert (colours[~fg] == 0).all() and colours[fg].max() > 0.5
    assert len(result.explained) == 3 and result.explained[0] > 0.5


def test_no_image_comes_out_blank():
    """An image made of background alone falls wholly below one cut over all images; it still shows its 10 %
    most object-like patches (4 of 36), unless the floor is turned off."""
    tokens, inner = _two_region_tokens()
    tokens[2] = tokens[2][0, 0] + 0.3 * torch.randn(6, 6, 16, generator=torch.Generator().manual_seed(1))
    assert pca_rgb(tokens).foreground[2].sum() == 4
    assert pca_rgb(tokens, min_fraction=0).foreground[2].sum() == 0
    assert np.array_equal(pca_rgb(tokens).foreground[0], inner.numpy())  # images with an object: unchanged


def test_each_image_finds_its_object_whichever_side_its_background_lies():
    """The first component separates light from dark: the object scores high where the background is dark and
    low where it is light. Orienting by each image's own border finds the object in both."""
    g = torch.Generator().manual_seed(0)
    direction = torch.randn(16, generator=g)
    inner = torch.zeros(6, 6, dtype=torch.bool)
    inner[1:-1, 1:-1] = True
    sign = torch.where(inner, 1.0, -1.0)[..., None]
    tokens = [s * direction * 3 + 0.3 * torch.randn(6, 6, 16, generator=g) for s in (sign, -sign, sign)]
    for fg in pca_rgb(tokens).foreground:
        assert np.array_equal(fg, inner.numpy())


def test_pca_without_background_removal_colours_everything():
    tokens, _ = _two_region_tokens(n_images=1)
    result = pca_rgb(tokens, remove_background=False)
    assert result.foreground[0].all() and result.colours[0].shape == (6, 6, 3)


def test_pca_needs_images():
    with pytest.raises(VitsslError):
        pca_rgb([])


def test_pca_command(tiny_run, tmp_path):
    paths = []
    for i, size in enumerate([(20, 20), (24, 16)]):
        path = tmp_path / f"im{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    out = tmp_path / "pca.png"
    assert main(["pca", str(tiny_run), *paths, "--out", str(out), "--device", "cpu"]) == 0
    assert out.stat().st_size > 3000
    assert not out.with_suffix(".npy").exists()  # sizes differ: no single array
    assert main(["pca", str(tiny_run), paths[0], paths[0], "--out", str(out), "--device", "cpu"]) == 0
    colours = np.load(out.with_suffix(".npy"))
    assert colours.shape == (2, 5, 5, 3) and colours.min() >= 0 and colours.max() <= 1
