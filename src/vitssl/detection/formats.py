"""Readers of the two common detection layouts: COCO JSON and Pascal VOC XML.

* COCO (Lin et al. 2014): ``ROOT/images/<file>`` and ``ROOT/annotations.json`` holding ``images`` (id,
  file_name, width, height), ``annotations`` (image_id, category_id, bbox = [x, y, w, h], iscrowd) and
  ``categories`` (id, name). Category ids may be any integers; labels become 1..C in category-id order.
* Pascal VOC (Everingham et al. 2010): ``ROOT/JPEGImages/<file>`` and ``ROOT/Annotations/<name>.xml`` with
  ``<filename>``, ``<size>`` and one ``<object>`` (``<name>``, ``<bndbox>`` xmin/ymin/xmax/ymax) per object.

Both return raw :class:`~vitssl.detection.dataset.DetectionSample` lists; checking boxes and labels against the
images is left to :func:`vitssl.detection.dataset.sanitize`, which reports problems with counts.
"""

from __future__ import annotations

import json
import warnings
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np

from vitssl.detection.types import DetectionSample, DetectionSet
from vitssl.errors import VitsslError

__all__ = ["read_coco", "read_voc"]


def _boxes(rows: list[list[float]]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float32).reshape(-1, 4)


def _load_coco_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise VitsslError(f"cannot read {path} as COCO JSON ({err}); fix or regenerate the file") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise VitsslError(f"{path} has no 'images' list; a COCO annotation file holds images, annotations, categories")
    return data


def read_coco(root: Path) -> DetectionSet:
    """Read a COCO-style folder (see the module docstring); crowd boxes are left out (with a count)."""
    path = root / "annotations.json"
    data = _load_coco_json(path)
    categories = sorted((int(c["id"]), str(c.get("name", c["id"]))) for c in data.get("categories", []))
    label_of = {cid: i + 1 for i, (cid, _) in enumerate(categories)}
    image_dir = root / "images" if (root / "images").is_dir() else root
    by_image: dict[int, list[tuple[list[float], int]]] = {int(im["id"]): [] for im in data["images"]}
    problems: Counter[str] = Counter()
    for ann in data.get("annotations", []):
        if ann.get("iscrowd", 0):
            problems["crowd boxes left out"] += 1
            continue
        bbox = ann.get("bbox")
        if int(ann.get("image_id", -1)) not in by_image or not isinstance(bbox, list) or len(bbox) != 4:
            problems["annotations without a known image or a 4-number bbox dropped"] += 1
            continue
        x, y, w, h = (float(v) for v in bbox)
        # an unknown category keeps label -1 so that sanitize() counts it with the other bad labels
        by_image[int(ann["image_id"])].append(([x, y, x + w, y + h], label_of.get(int(ann.get("category_id", -1)), -1)))
    samples = []
    for im in data["images"]:
        file = image_dir / str(im.get("file_name", ""))
        if not file.is_file():
            problems["images listed but missing on disk left out"] += 1
            continue
        objects = by_image[int(im["id"])]
        size = (int(im["width"]), int(im["height"])) if "width" in im and "height" in im else None
        samples.append(
            DetectionSample(file, _boxes([b for b, _ in objects]), np.asarray([c for _, c in objects], np.int64), size)
        )
    _warn(root, problems)
    return DetectionSet(samples, [name for _, name in categories], str(root))


def _warn(root: Path, problems: Counter[str]) -> None:
    for what, count in problems.items():
        warnings.warn(f"{root}: {count} {what}", stacklevel=3)


def _parse_voc(xml_path: Path) -> tuple[str, tuple[int, int] | None, list[tuple[str, list[float]]]]:
    """(file name, (width, height) or None, [(class name, box)]) of one VOC annotation; ValueError if malformed."""
    try:
        tree = ET.parse(xml_path).getroot()
    except ET.ParseError as err:
        raise ValueError(str(err)) from None
    filename = tree.findtext("filename") or f"{xml_path.stem}.jpg"
    size_el = tree.find("size")
    size = None
    if size_el is not None and size_el.findtext("width") and size_el.findtext("height"):
        size = (int(float(size_el.findtext("width", "0"))), int(float(size_el.findtext("height", "0"))))
        size = size if min(size) > 0 else None
    objects = []
    for obj in tree.iter("object"):
        box = obj.find("bndbox")
        if box is None:
            raise ValueError("an <object> has no <bndbox>")
        coords = [float(box.findtext(k, "nan")) for k in ("xmin", "ymin", "xmax", "ymax")]
        objects.append(((obj.findtext("name") or "").strip(), coords))
    return filename, size, objects


def read_voc(root: Path, ids: list[str] | None = None, class_names: list[str] | None = None) -> DetectionSet:
    """Read a Pascal VOC folder (see the module docstring).

    Args:
        root: Folder with ``JPEGImages/`` and ``Annotations/``.
        ids: Annotation stems to read (an ``ImageSets/Main`` list); default every XML file.
        class_names: Label order; default the sorted names found. Objects of other names get label -1 (counted
            and dropped by ``sanitize``).
    """
    xml_dir = root / "Annotations"
    xmls = [xml_dir / f"{i}.xml" for i in ids] if ids is not None else sorted(xml_dir.glob("*.xml"))
    problems: Counter[str] = Counter()
    parsed, bad = [], []
    for xml_path in xmls:
        try:
            parsed.append(_parse_voc(xml_path))
        except (OSError, ValueError) as err:
            bad.append(f"{xml_path.name}: {err}")
    if bad:
        problems[f"annotation files unreadable or malformed skipped (first: {bad[0]})"] = len(bad)
    if class_names is None:
        class_names = sorted({name for _, _, objects in parsed for name, _ in objects})
    label_of = {name: i + 1 for i, name in enumerate(class_names)}
    samples = []
    for filename, size, objects in parsed:
        file = root / "JPEGImages" / filename
        if not file.is_file():
            problems["annotated images missing from JPEGImages left out"] += 1
            continue
        labels = np.asarray([label_of.get(name, -1) for name, _ in objects], dtype=np.int64)
        samples.append(DetectionSample(file, _boxes([b for _, b in objects]), labels, size))
    _warn(root, problems)
    return DetectionSet(samples, list(class_names), str(root))
