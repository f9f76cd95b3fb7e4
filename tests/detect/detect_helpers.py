"""Builders of tiny hand-made detection folders (COCO and Pascal VOC) for the tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, width: int, height: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def make_coco(root: Path, images: list[tuple[str, int, int]], annotations: list[dict], categories: list[dict]) -> Path:
    """A COCO folder: ``images`` are (file name, width, height); annotation dicts need image_id (index)."""
    entries = []
    for i, (name, w, h) in enumerate(images):
        write_image(root / "images" / name, w, h, seed=i)
        entries.append({"id": i, "file_name": name, "width": w, "height": h})
    anns = [{"id": k + 1, "iscrowd": 0, **a} for k, a in enumerate(annotations)]
    (root / "annotations.json").write_text(
        json.dumps({"images": entries, "annotations": anns, "categories": categories})
    )
    return root


def voc_xml(filename: str, width: int, height: int, objects: list[tuple[str, tuple[float, ...]]]) -> str:
    objs = "".join(
        f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for name, b in objects
    )
    return (
        f"<annotation><filename>{filename}</filename><size><width>{width}</width><height>{height}</height>"
        f"<depth>3</depth></size>{objs}</annotation>"
    )


def make_voc(root: Path, entries: dict[str, tuple[int, int, list]]) -> Path:
    """A VOC folder: ``entries`` maps a stem to (width, height, [(class name, (x1, y1, x2, y2))])."""
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    for i, (stem, (w, h, objects)) in enumerate(entries.items()):
        write_image(root / "JPEGImages" / f"{stem}.jpg", w, h, seed=i)
        (root / "Annotations" / f"{stem}.xml").write_text(voc_xml(f"{stem}.jpg", w, h, objects))
    return root
