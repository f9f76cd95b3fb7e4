"""Fixtures that build small image folders in a temporary directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ImageWriter = Callable[..., Path]


def write_image(path: Path, seed: int, size: tuple[int, int] = (12, 10)) -> Path:
    """Write a random RGB image (format from the suffix) and return its path."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def write_corrupt(path: Path, kind: str) -> Path:
    """Write an unreadable file: "garbage" bytes, a "truncated" JPEG, "text", or an "empty" file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    elif kind == "truncated":
        write_image(path, seed=1, size=(64, 64))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "text":
        path.write_text("this is not an image\n")
    else:
        path.write_bytes(b"")
    return path


@pytest.fixture
def make_image() -> ImageWriter:
    """The :func:`write_image` helper."""
    return write_image


@pytest.fixture
def make_corrupt() -> ImageWriter:
    """The :func:`write_corrupt` helper."""
    return write_corrupt


@pytest.fixture
def labelled_folder(tmp_path: Path) -> Path:
    """``root/{cat,dog}/...`` with 4 + 3 images, some nested, plus files that must be ignored."""
    root = tmp_path / "labelled"
    for i in range(4):
        write_image(root / "cat" / f"{i}.png", seed=i)
    write_image(root / "dog" / "a.jpg", seed=10)
    write_image(root / "dog" / "deep" / "er" / "b.JPEG", seed=11)
    write_image(root / "dog" / "c.bmp", seed=12)
    (root / "dog" / "notes.txt").write_text("not an image")
    write_image(root / ".hidden" / "x.png", seed=13)
    write_image(root / "cat" / ".thumb.png", seed=14)
    return root


@pytest.fixture
def corrupt_folder(tmp_path: Path) -> Path:
    """``root/{a,b}/`` with 3 good images each plus a truncated JPEG in a and a garbage PNG in b."""
    root = tmp_path / "corrupt"
    for cls in ("a", "b"):
        for i in range(3):
            write_image(root / cls / f"{i}.png", seed=10 * ord(cls) + i)
    write_corrupt(root / "a" / "1x.jpg", "truncated")  # sorts between 1.png and 2.png
    write_corrupt(root / "b" / "2x.png", "garbage")  # sorts last in b
    return root
