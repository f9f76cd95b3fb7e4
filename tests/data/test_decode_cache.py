"""decode_images / choose_cache_mode: packing across chunks, parallel decoding, the auto rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vitssl.data import cache
from vitssl.data.discovery import find_images
from vitssl.data.images import load_rgb


@pytest.mark.parametrize("workers", [1, 2])
def test_chunked_decoding_matches_direct_loading(
    tmp_path: Path, make_image, make_corrupt, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    for i in range(9):
        make_image(tmp_path / f"{i}.png", seed=i, size=(3 + i, 5 + 2 * i))  # sizes differ per image
    make_corrupt(tmp_path / "4x.jpg", "garbage")
    make_corrupt(tmp_path / "7x.png", "empty")
    paths = find_images(tmp_path)
    monkeypatch.setattr(cache, "_CHUNK", 4)  # several packed chunks, and several tasks for the pool
    store, kept, errors = cache.decode_images(paths, num_workers=workers)
    bad = {"4x.jpg", "7x.png"}
    assert [paths[i].name for i in kept] == [p.name for p in paths if p.name not in bad]
    assert sorted(name for name in bad if any(name in str(err) for err in errors)) == sorted(bad)
    assert len(store) == len(kept) == 9
    for position, index in enumerate(kept):
        assert np.array_equal(store.array(position), np.asarray(load_rgb(paths[index])))
    assert store.nbytes == sum(store.array(i).size for i in range(len(store)))


def test_auto_cache_rule(tmp_path: Path, make_image, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = [make_image(tmp_path / f"{i}.png", seed=i) for i in range(3)]
    assert cache.choose_cache_mode(paths, "auto") == "memory"
    assert cache.choose_cache_mode(paths, "none") == "none"
    monkeypatch.setattr(cache, "AUTO_MAX_IMAGES", 2)
    assert cache.choose_cache_mode(paths, "auto") == "none"
    monkeypatch.setattr(cache, "AUTO_MAX_IMAGES", 10)
    monkeypatch.setattr(cache, "AUTO_MAX_FILE_BYTES", 10)
    assert cache.choose_cache_mode(paths, "auto") == "none"
    monkeypatch.setattr(cache, "AUTO_MAX_FILE_BYTES", 10**9)
    monkeypatch.setattr(cache, "AUTO_MAX_DECODED_BYTES", 100)  # 3 x (12 x 10 x 3) bytes decoded
    assert cache.choose_cache_mode(paths, "auto") == "none"
