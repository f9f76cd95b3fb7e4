"""The built-in synthetic_det dataset: layout, sane boxes, several objects per image, determinism."""

from __future__ import annotations

import json

from vitssl.data.sources.synthetic_render import CLASS_NAMES
from vitssl.detection.formats import read_coco
from vitssl.detection.synthetic import ensure_synthetic_det


def test_layout_and_boxes(tiny_det_data):
    assert (tiny_det_data / "manifest.json").is_file()
    for split, count in (("train", 16), ("test", 8)):
        data = read_coco(tiny_det_data / split)
        assert len(data.samples) == count and data.class_names == list(CLASS_NAMES)
        for s in data.samples:
            assert 1 <= len(s.labels) <= 4 and s.size == (64, 64)
            assert (s.boxes[:, :2] >= 0).all() and (s.boxes[:, 2:] <= 64).all()
            assert ((s.boxes[:, 2:] - s.boxes[:, :2]) >= 2).all()
            assert ((s.labels >= 1) & (s.labels <= len(CLASS_NAMES))).all()
    objects = [len(s.labels) for s in read_coco(tiny_det_data / "train").samples]
    assert max(objects) >= 3  # several objects per image occur


def test_deterministic_and_cached(tmp_path, tiny_det_data):
    again = ensure_synthetic_det(tmp_path, 64, 16, 8)
    assert again.name == tiny_det_data.name
    for split in ("train", "test"):
        assert json.loads((again / split / "annotations.json").read_text()) == json.loads(
            (tiny_det_data / split / "annotations.json").read_text()
        )
    assert (again / "train/images/00.png").read_bytes() == (tiny_det_data / "train/images/00.png").read_bytes()
    assert ensure_synthetic_det(tmp_path, 64, 16, 8) == again  # second call: the cached copy
