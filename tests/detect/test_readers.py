"""COCO and Pascal VOC readers on tiny hand-made folders, and how --data folders are split."""

from __future__ import annotations

import numpy as np
import pytest

from detect.detect_helpers import make_coco, make_voc
from vitssl.detection.dataset import DetectionImages, load_detection
from vitssl.detection.formats import read_coco, read_voc

CATS = [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]


def test_coco_reader_maps_category_ids_to_labels(tmp_path):
    root = make_coco(
        tmp_path / "coco",
        [("a.png", 40, 30), ("b.png", 20, 20)],
        [
            {"image_id": 0, "category_id": 7, "bbox": [1, 2, 10, 5]},
            {"image_id": 0, "category_id": 3, "bbox": [5, 5, 4, 4]},
        ],
        CATS,
    )
    data = read_coco(root)
    assert data.class_names == ["cat", "dog"]  # labels follow category-id order: cat (3) -> 1, dog (7) -> 2
    a, b = data.samples
    np.testing.assert_allclose(a.boxes, [[1, 2, 11, 7], [5, 5, 9, 9]])
    assert a.labels.tolist() == [2, 1] and a.size == (40, 30)
    assert b.boxes.shape == (0, 4) and b.labels.shape == (0,)


def test_voc_reader(tmp_path):
    root = make_voc(
        tmp_path / "voc",
        {
            "x1": (50, 40, [("person", (1, 2, 20, 30)), ("car", (10, 10, 40, 35))]),
            "x2": (30, 30, [("car", (0, 0, 9, 9))]),
        },
    )
    data = read_voc(root)
    assert data.class_names == ["car", "person"]
    x1 = next(s for s in data.samples if s.path.stem == "x1")
    assert x1.labels.tolist() == [2, 1] and x1.size == (50, 40)
    np.testing.assert_allclose(x1.boxes, [[1, 2, 20, 30], [10, 10, 40, 35]])


def test_train_val_subfolders_share_the_training_class_order(tmp_path):
    make_voc(tmp_path / "d" / "train", {"t": (32, 32, [("b", (1, 1, 9, 9)), ("a", (2, 2, 12, 12))])})
    make_voc(tmp_path / "d" / "val", {"v": (32, 32, [("b", (3, 3, 13, 13))])})
    train, val = load_detection(str(tmp_path / "d"), "unused")
    assert train.class_names == val.class_names == ["a", "b"]
    assert val.samples[0].labels.tolist() == [2]


def test_voc_imagesets_split(tmp_path):
    root = make_voc(tmp_path / "voc", {f"i{k}": (32, 32, [("a", (1, 1, 20, 20))]) for k in range(5)})
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("i0\ni1\ni2\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("i3\ni4\n")
    train, val = load_detection(str(root), "unused")
    assert [s.path.stem for s in train.samples] == ["i0", "i1", "i2"]
    assert [s.path.stem for s in val.samples] == ["i3", "i4"]


def test_single_folder_holds_out_every_fifth_image(tmp_path):
    images = [(f"{k}.png", 24, 24) for k in range(10)]
    anns = [{"image_id": k, "category_id": 3, "bbox": [2, 2, 10, 10]} for k in range(10)]
    make_coco(tmp_path / "c", images, anns, CATS)
    train, val = load_detection(str(tmp_path / "c"), "unused")
    assert len(train.samples) == 8 and [s.path.name for s in val.samples] == ["4.png", "9.png"]


def test_dataset_items_and_flip(tmp_path):
    root = make_coco(
        tmp_path / "c", [("a.png", 40, 30)], [{"image_id": 0, "category_id": 3, "bbox": [1, 2, 10, 5]}], CATS
    )
    data = read_coco(root)
    image, target = DetectionImages(data)[0]
    assert image.shape == (3, 30, 40) and image.min() >= 0 and image.max() <= 1
    flipped = [DetectionImages(data, flip=True, seed=s)[0] for s in range(8)]
    boxes = {tuple(t["boxes"][0].tolist()) for _, t in flipped}
    assert boxes == {(1.0, 2.0, 11.0, 7.0), (29.0, 2.0, 39.0, 7.0)}  # both outcomes occur over seeds


@pytest.mark.parametrize("split", ["train", "test"])
def test_synthetic_det_split_spec_holds_out_part_of_that_split(tmp_path, monkeypatch, tiny_det_data, split):
    import vitssl.detection.dataset as detection

    monkeypatch.setattr(detection, "ensure_synthetic_det", lambda cache: tiny_det_data)
    train, val = load_detection(f"synthetic_det:{split}", "unused")
    total = 16 if split == "train" else 8
    assert len(train.samples) + len(val.samples) == total and train.native_size == 64
