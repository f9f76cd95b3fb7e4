"""Bad detection data gives one-line errors, or warnings with counts, never a traceback mid-training."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from detect.detect_helpers import make_coco, make_voc, write_image
from vitssl.cli import main
from vitssl.detection.dataset import load_detection, sanitize
from vitssl.detection.formats import read_coco, read_voc
from vitssl.errors import VitsslError

CATS = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]


def _messages(record) -> list[str]:
    return [str(w.message) for w in record]


def test_folder_without_annotations_is_an_error(tmp_path):
    write_image(tmp_path / "d" / "images" / "x.png", 16, 16)
    with pytest.raises(VitsslError, match="no annotations"):
        load_detection(str(tmp_path / "d"), "unused")
    (tmp_path / "e").mkdir()
    with pytest.raises(VitsslError, match="not a detection folder"):
        load_detection(str(tmp_path / "e"), "unused")
    with pytest.raises(VitsslError, match="no such folder"):
        load_detection(str(tmp_path / "missing"), "unused")


def test_broken_json_is_an_error(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "annotations.json").write_text("{not json")
    with pytest.raises(VitsslError, match="cannot read"):
        read_coco(tmp_path / "c")


def test_box_problems_are_fixed_and_counted(tmp_path):
    anns = [
        {"image_id": 0, "category_id": 1, "bbox": [-5, 2, 20, 10]},  # reaches outside: clipped
        {"image_id": 0, "category_id": 2, "bbox": [30, 30, 40, 40]},  # reaches outside: clipped
        {"image_id": 0, "category_id": 1, "bbox": [5, 5, 0, 8]},  # zero width: dropped
        {"image_id": 0, "category_id": 1, "bbox": [60, 60, 5, 5]},  # wholly outside: degenerate once clipped
        {"image_id": 0, "category_id": 9, "bbox": [2, 2, 5, 5]},  # unknown category: dropped
        {"image_id": 0, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 1},  # crowd: left out
        {"image_id": 5, "category_id": 1, "bbox": [1, 1, 5, 5]},  # unknown image: dropped
    ]
    root = make_coco(tmp_path / "c", [("x.png", 48, 40), ("empty.png", 20, 20)], anns, CATS)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        data = sanitize(read_coco(root))
    text = "\n".join(_messages(record))
    assert "2 boxes outside their image clipped" in text
    assert "2 degenerate boxes" in text
    assert "1 objects of unknown class ids dropped" in text
    assert "1 crowd boxes left out" in text
    assert "1 annotations without a known image" in text
    assert "1 images without objects" in text
    assert all("\n" not in m for m in _messages(record))  # one line each
    x = data.samples[0]
    np.testing.assert_allclose(x.boxes, [[0, 2, 15, 12], [30, 30, 48, 40]])
    assert data.fixes["boxes outside their image clipped"] == 2


def test_voc_unknown_class_names_and_malformed_xml(tmp_path):
    root = make_voc(tmp_path / "v", {"a": (32, 32, [("cat", (1, 1, 10, 10)), ("zebra", (2, 2, 9, 9))])})
    (root / "Annotations" / "broken.xml").write_text("<annotation><object>")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        data = sanitize(read_voc(root, class_names=["cat"]))
    text = "\n".join(_messages(record))
    assert "1 annotation files unreadable or malformed skipped" in text
    assert "1 objects of unknown class ids dropped" in text
    assert data.samples[0].labels.tolist() == [1]


def test_no_objects_at_all_is_an_error(tmp_path):
    make_coco(tmp_path / "c" / "train", [("x.png", 20, 20)], [], CATS)
    make_coco(tmp_path / "c" / "val", [("y.png", 20, 20)], [], CATS)
    with pytest.warns(UserWarning, match="images without objects"), pytest.raises(VitsslError, match="no object"):
        load_detection(str(tmp_path / "c"), "unused")


def test_cli_reports_a_bad_folder_in_one_line(tiny_det_run, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["detect", str(tiny_det_run), "--data", str(tmp_path / "empty"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vitssl: error:") and "not a detection folder" in err and "\n" not in err


def _coco_with_an_empty_jpg(root):
    """A COCO folder of 6 images with one object each; image 0 (0.jpg) is then emptied."""
    images = [(f"{i}.{'jpg' if i == 0 else 'png'}", 32, 32) for i in range(6)]
    anns = [{"image_id": i, "category_id": 1, "bbox": [4, 4, 12, 12]} for i in range(6)]
    make_coco(root, images, anns, CATS)
    (root / "images" / "0.jpg").write_bytes(b"")
    return root


def test_unreadable_image_is_left_out_and_named_in_the_summary(tmp_path):
    from vitssl.data.bad_inputs import collecting

    root = _coco_with_an_empty_jpg(tmp_path / "c")
    with collecting() as tally:
        data = sanitize(read_coco(root))
    assert len(data.samples) == 5 and data.fixes["unreadable images left out"] == 1
    assert tally.entries() == [f"{root}/images/0.jpg (empty file)"]


def test_detect_strict_stops_at_the_empty_jpg_with_one_line(tiny_det_run, tmp_path, capsys):
    root = _coco_with_an_empty_jpg(tmp_path / "c")
    assert main(["detect", str(tiny_det_run), "--data", str(root), "--device", "cpu", "--strict"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "0.jpg (empty file)" in lines[0] and "--strict" in lines[0], lines


def test_detect_default_skips_the_empty_jpg_with_one_summary_line(tiny_det_run, tmp_path, capsys):
    root = _coco_with_an_empty_jpg(tmp_path / "c")
    args = ["detect", str(tiny_det_run), "--data", str(root), "--epochs", "1", "--batch-size", "2"]
    assert main([*args, "--image-size", "32", "--fpn-channels", "32", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert err.count("vitssl: skipped 1 unreadable image (first: ") == 1 and "Traceback" not in err
