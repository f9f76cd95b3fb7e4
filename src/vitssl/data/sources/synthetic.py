"""A built-in synthetic dataset of ten shape classes, generated on first use, so demos work offline.

Layout of the folder :func:`ensure_synthetic` returns::

    <root>/train/<class>/<i>.png     RGB images
    <root>/test/<class>/<i>.png
    <root>/masks/train/<class>/<i>.png   foreground masks, mode L, 255 = shape
    <root>/masks/test/<class>/<i>.png
    <root>/manifest.json             written last: its presence marks the folder complete

The class is decided by shape alone (see :mod:`vitssl.data.sources.synthetic_render`); the masks allow checking that
attention maps (DINO, Caron et al. 2021, arXiv 2104.14294, figure 1) land on the object.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vitssl.data.sources.synthetic_render import CLASS_NAMES, render_sample
from vitssl.errors import VitsslError

__all__ = ["SPLITS", "class_names", "ensure_synthetic", "mask_path", "synthetic_folder_name"]

VERSION = "v5"
SPLITS = ("train", "test")
_MANIFEST = "manifest.json"
_SPLIT_CODES = {"train": 0, "test": 1}


def class_names() -> list[str]:
    """The ten class names, in label order."""
    return list(CLASS_NAMES)


def synthetic_folder_name(image_size: int, train_per_class: int, test_per_class: int, seed: int) -> str:
    """The cache folder name; every parameter that changes the images is part of it."""
    return f"synthetic-{VERSION}-{image_size}px-{train_per_class}x{test_per_class}-seed{seed}"


def mask_path(image_path: str | os.PathLike[str]) -> Path:
    """The mask of a synthetic image: ``<root>/<split>/<class>/<i>.png`` -> ``<root>/masks/<split>/...``."""
    path = Path(image_path)
    split, class_name, root = path.parent.parent.name, path.parent.name, path.parents[2]
    if split not in SPLITS:
        raise VitsslError(f"{path} is not a synthetic dataset image (expected <root>/train|test/<class>/<i>.png)")
    return root / "masks" / split / class_name / path.name


def _is_complete(root: Path) -> bool:
    return (root / _MANIFEST).is_file()


def _generate(target: Path, image_size: int, counts: dict[str, int], seed: int) -> None:
    total = len(CLASS_NAMES) * sum(counts.values())
    show = None if total > 500 else True  # None: a bar only when writing to a terminal
    with tqdm(total=total, desc="generating synthetic images", unit="img", disable=show) as bar:
        for split, count in counts.items():
            for label, name in enumerate(CLASS_NAMES):
                image_dir = target / split / name
                mask_dir = target / "masks" / split / name
                image_dir.mkdir(parents=True)
                mask_dir.mkdir(parents=True)
                width = len(str(max(count - 1, 0)))
                for i in range(count):
                    # One generator per image: an image does not depend on how many were drawn before it.
                    rng = np.random.default_rng([seed, _SPLIT_CODES[split], label, i])
                    image, mask = render_sample(label, rng, image_size)
                    filename = f"{i:0{width}d}.png"
                    image.save(image_dir / filename)
                    mask.save(mask_dir / filename)
                    bar.update(1)


def ensure_synthetic(
    cache_dir: str | os.PathLike[str],
    image_size: int = 32,
    train_per_class: int = 300,
    test_per_class: int = 100,
    seed: int = 0,
) -> Path:
    """Generate the synthetic dataset under ``cache_dir`` unless a complete copy exists; return its root.

    Generation is deterministic in (image_size, counts, seed) and writes into a temporary folder that is
    renamed into place only when complete, so an interrupted run never leaves a folder that looks finished,
    and concurrent processes (e.g. several ranks) simply use whichever copy lands first.

    Args:
        cache_dir: Folder for generated datasets (created if missing).
        image_size: Side of the square images in pixels (at least 8).
        train_per_class: Training images per class.
        test_per_class: Test images per class.
        seed: Seed of the images.

    Returns:
        ``<cache_dir>/synthetic-v2-<size>px-<train>x<test>-seed<seed>``.

    Raises:
        VitsslError: Bad sizes, or the cache folder cannot be written.
    """
    if image_size < 8 or train_per_class < 1 or test_per_class < 1:
        raise VitsslError(
            f"synthetic data needs image_size >= 8 and at least one image per class and split, got "
            f"image_size={image_size}, train_per_class={train_per_class}, test_per_class={test_per_class}"
        )
    cache = Path(cache_dir).expanduser()
    root = cache / synthetic_folder_name(image_size, train_per_class, test_per_class, seed)
    if _is_complete(root):
        return root
    try:
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=cache))
        staging.chmod(0o755)  # mkdtemp's private 0700 would hide a shared cache from other users
    except OSError as err:
        raise VitsslError(f"cannot write the synthetic dataset into {cache} ({err}); set data.cache_dir") from err
    try:
        counts = {"train": train_per_class, "test": test_per_class}
        _generate(staging, image_size, counts, seed)
        manifest = {
            "version": VERSION,
            "image_size": image_size,
            "per_class": counts,
            "seed": seed,
            "classes": list(CLASS_NAMES),
        }
        (staging / _MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _publish(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when the rename succeeded
    return root


def _publish(staging: Path, root: Path) -> None:
    """Rename the finished ``staging`` folder to ``root``; a complete ``root`` made meanwhile wins."""
    try:
        os.rename(staging, root)
    except OSError as err:
        if _is_complete(root):
            return
        raise VitsslError(
            f"cannot create {root} ({err}); if it is a leftover of an interrupted run, delete it and retry"
        ) from err
