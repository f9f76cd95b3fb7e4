"""``synthetic_det``: a built-in, offline detection dataset, generated on first use into the cache folder.

Layout of the folder :func:`ensure_synthetic_det` returns (each split is a COCO-style folder, read by
:func:`vitssl.detection.formats.read_coco`)::

    <root>/train/images/<i>.png     RGB images with 1-4 shapes each (see vitssl.detection.render)
    <root>/train/annotations.json   COCO boxes and categories (the ten shape classes of `synthetic`)
    <root>/test/...
    <root>/manifest.json            written last: its presence marks the folder complete

Generation is deterministic in (image size, counts, seed): every image has its own generator seeded by
(seed, split, index), and a temporary folder is renamed into place only when complete, as for ``synthetic``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from vitssl.data.sources.synthetic_render import CLASS_NAMES
from vitssl.detection.render import render_scene
from vitssl.errors import VitsslError

__all__ = ["DEFAULT_SIZE", "ensure_synthetic_det"]

VERSION = "v1"
DEFAULT_SIZE = 64
_SPLIT_CODES = {"train": 0, "test": 1}
_MANIFEST = "manifest.json"


def _write_split(target: Path, split: str, count: int, image_size: int, seed: int, bar: tqdm) -> None:
    images_dir = target / split / "images"
    images_dir.mkdir(parents=True)
    width = len(str(max(count - 1, 0)))
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for i in range(count):
        rng = np.random.default_rng([seed, _SPLIT_CODES[split], i])
        image, boxes, classes = render_scene(rng, image_size)
        name = f"{i:0{width}d}.png"
        image.save(images_dir / name)
        images.append({"id": i, "file_name": name, "width": image_size, "height": image_size})
        for box, cls in zip(boxes, classes, strict=True):
            x1, y1, x2, y2 = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": cls + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
        bar.update(1)
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(CLASS_NAMES)]
    payload = {"images": images, "annotations": annotations, "categories": categories}
    (target / split / "annotations.json").write_text(json.dumps(payload))


def ensure_synthetic_det(
    cache_dir: str | os.PathLike[str],
    image_size: int = DEFAULT_SIZE,
    train_images: int = 1000,
    test_images: int = 200,
    seed: int = 0,
) -> Path:
    """Generate ``synthetic_det`` under ``cache_dir`` unless a complete copy exists; return its root.

    Args:
        cache_dir: Folder for generated datasets (created if missing).
        image_size: Side of the square images (at least 32).
        train_images: Images in the train split.
        test_images: Images in the test split.
        seed: Seed of the images.

    Raises:
        VitsslError: Bad sizes, or the cache folder cannot be written.
    """
    if image_size < 32 or train_images < 1 or test_images < 1:
        raise VitsslError(
            f"synthetic_det needs image_size >= 32 and at least one image per split, got {image_size}, "
            f"{train_images}, {test_images}"
        )
    cache = Path(cache_dir).expanduser()
    root = cache / f"synthetic_det-{VERSION}-{image_size}px-{train_images}x{test_images}-seed{seed}"
    if (root / _MANIFEST).is_file():
        return root
    try:
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=cache))
        staging.chmod(0o755)
    except OSError as err:
        raise VitsslError(f"cannot write synthetic_det into {cache} ({err}); set data.cache_dir") from err
    try:
        counts = {"train": train_images, "test": test_images}
        with tqdm(total=sum(counts.values()), desc="generating synthetic_det", unit="img", disable=None) as bar:
            for split, count in counts.items():
                _write_split(staging, split, count, image_size, seed, bar)
        manifest = {"version": VERSION, "image_size": image_size, "images": counts, "seed": seed}
        (staging / _MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        try:
            os.rename(staging, root)
        except OSError as err:
            if not (root / _MANIFEST).is_file():
                raise VitsslError(f"cannot create {root} ({err}); delete it and retry") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root
