"""Detection data: named and folder datasets, checks with counted warnings, and a torch ``Dataset``.

``--data`` of ``vitssl detect`` takes:

* ``synthetic_det`` (or ``synthetic_det:train`` / ``:test`` for one split): the built-in offline set;
* a folder with ``train/`` and ``val/`` (or ``test/``) sub-folders, each a COCO or VOC folder;
* a VOC folder with ``ImageSets/Main/train.txt`` and ``val.txt``;
* a single COCO or VOC folder, split deterministically: every fifth image (in file-name order) is held out.

A COCO folder holds ``images/`` and ``annotations.json``; a VOC folder ``JPEGImages/`` and ``Annotations/``
(see :mod:`vitssl.detection.formats`). Boxes are checked once, up front, so that training never meets a bad
one: boxes reaching outside their image are clipped, degenerate boxes (under one pixel wide or tall, or not
finite) and boxes of unknown classes are dropped, images without objects are kept as negatives; each kind is
reported as one warning with its count. Unreadable images are left out and reported instead through
:func:`vitssl.data.bad_inputs.note` (the command's summary line, or a one-line error under ``--strict``); one that
breaks after the checks becomes a blank negative whose target names it under ``"bad_paths"``.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from vitssl.data.bad_inputs import entry, file_reason, note
from vitssl.data.images import UnreadableImageError, load_rgb
from vitssl.detection.formats import read_coco, read_voc
from vitssl.detection.synthetic import DEFAULT_SIZE, ensure_synthetic_det
from vitssl.detection.types import DetectionSample, DetectionSet
from vitssl.errors import VitsslError

__all__ = [
    "DetectionImages",
    "DetectionSample",
    "DetectionSet",
    "collate",
    "load_detection",
    "sanitize",
    "take_bad_paths",
]

SYNTHETIC = "synthetic_det"
_UNREADABLE = "unreadable images left out"  # counted in ``fixes``, reported through the summary line only
_LAYOUT_HELP = "images/ + annotations.json (COCO) or JPEGImages/ + Annotations/ (Pascal VOC)"


def _image_size(sample: DetectionSample) -> tuple[int, int] | None:
    """The (width, height) of a sample's image (from its annotation, else its header); None when the file is
    missing, empty or has no readable header."""
    if file_reason(sample.path) != "cannot decode":  # missing or empty: a stat, even when the size is annotated
        return None
    if sample.size is not None:
        return sample.size
    try:
        with Image.open(sample.path) as image:  # the header only
            return image.size
    except Exception:  # unreadable files are counted by the caller
        return None


def _fix_sample(sample: DetectionSample, num_classes: int, counts: Counter[str]) -> DetectionSample | None:
    size = _image_size(sample)
    if size is None:
        counts[_UNREADABLE] += 1
        note(entry(sample.path, file_reason(sample.path)))
        return None
    w, h = size
    boxes, labels = sample.boxes.astype(np.float32).reshape(-1, 4), sample.labels.astype(np.int64)
    finite = np.isfinite(boxes).all(axis=1)
    known = (labels >= 1) & (labels <= num_classes)
    counts["objects of unknown class ids dropped"] += int((~known).sum())
    clipped = boxes.copy()
    clipped[:, 0::2] = np.clip(boxes[:, 0::2], 0, w)
    clipped[:, 1::2] = np.clip(boxes[:, 1::2], 0, h)
    moved = finite & ~np.isclose(clipped, boxes).all(axis=1)
    big = finite & (clipped[:, 2] - clipped[:, 0] >= 1) & (clipped[:, 3] - clipped[:, 1] >= 1)
    counts["boxes outside their image clipped"] += int((moved & big & known).sum())
    counts["degenerate boxes (under 1 px or not finite) dropped"] += int((~big & known).sum())
    keep = big & known
    if not keep.any():
        counts["images without objects kept as negatives"] += 1
    return DetectionSample(sample.path, clipped[keep], labels[keep], (w, h))


def sanitize(data: DetectionSet) -> DetectionSet:
    """Check every box against its image and label range; fix what can be fixed and warn once per kind.

    Returns:
        A new set whose boxes lie inside their images, are at least 1 px wide and tall, and have labels
        1..C; ``fixes`` holds the counts.
    """
    counts: Counter[str] = Counter()
    samples = [s for s in (_fix_sample(x, len(data.class_names), counts) for x in data.samples) if s is not None]
    fixes = {k: v for k, v in counts.items() if v}
    for what, count in fixes.items():
        if what == _UNREADABLE:
            continue
        warnings.warn(f"{data.source}: {count} {what}", stacklevel=2)
    return DetectionSet(samples, data.class_names, data.source, data.native_size, fixes)


def _read_folder(root: Path, class_names: list[str] | None = None, ids: list[str] | None = None) -> DetectionSet:
    if (root / "annotations.json").is_file():
        data = read_coco(root)
        return data if class_names is None else _align(data, class_names)
    if (root / "Annotations").is_dir() and (root / "JPEGImages").is_dir():
        return read_voc(root, ids, class_names)
    if (root / "images").is_dir() or (root / "JPEGImages").is_dir():
        raise VitsslError(f"{root} has images but no annotations; add annotations.json (COCO) or Annotations/ (VOC)")
    raise VitsslError(f"{root} is not a detection folder; lay it out as {_LAYOUT_HELP}, or use --data synthetic_det")


def _align(data: DetectionSet, class_names: list[str]) -> DetectionSet:
    """Relabel a set to another set's class order, by name (names it lacks become -1, dropped by sanitize)."""
    if data.class_names == class_names:
        return data
    new = {name: i + 1 for i, name in enumerate(class_names)}

    def relabel(label: int) -> int:
        return new.get(data.class_names[label - 1], -1) if 1 <= label <= len(data.class_names) else -1

    samples = [
        DetectionSample(s.path, s.boxes, np.asarray([relabel(int(x)) for x in s.labels], np.int64), s.size)
        for s in data.samples
    ]
    return DetectionSet(samples, class_names, data.source, data.native_size)


def _hold_out(data: DetectionSet) -> tuple[DetectionSet, DetectionSet]:
    ordered = sorted(data.samples, key=lambda s: s.path.name)
    train = [s for i, s in enumerate(ordered) if i % 5 != 4]
    val = [s for i, s in enumerate(ordered) if i % 5 == 4]
    src = data.source
    return (
        DetectionSet(train, data.class_names, f"{src} (4 of 5)"),
        DetectionSet(val, data.class_names, f"{src} (every 5th image)"),
    )


def _voc_ids(root: Path, split: str) -> list[str] | None:
    path = root / "ImageSets" / "Main" / f"{split}.txt"
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()] if path.is_file() else None


def _load_splits(spec: str, cache_dir: str) -> tuple[DetectionSet, DetectionSet]:
    name, _, split = spec.partition(":")
    if name == SYNTHETIC:
        root = ensure_synthetic_det(cache_dir)
        train, test = read_coco(root / "train"), read_coco(root / "test")
        if split:  # one split named: hold out part of it
            if split not in ("train", "test"):
                raise VitsslError(f"--data {spec}: unknown split {split!r}; use {name}:train or {name}:test")
            train, test = _hold_out(train if split == "train" else test)
        train.native_size = test.native_size = DEFAULT_SIZE
        return train, test
    root = Path(spec).expanduser()
    if not root.is_dir():
        raise VitsslError(f"--data {spec}: no such folder; give a detection folder ({_LAYOUT_HELP}) or synthetic_det")
    val_dir = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
    if (root / "train").is_dir() and val_dir is not None:
        train = _read_folder(root / "train")
        return train, _read_folder(val_dir, train.class_names)
    train_ids, val_ids = _voc_ids(root, "train"), _voc_ids(root, "val")
    if train_ids is not None and val_ids is not None:
        train = _read_folder(root, ids=train_ids)
        return train, _read_folder(root, train.class_names, val_ids)
    return _hold_out(_read_folder(root))


def _cap(data: DetectionSet, limit: int | None) -> DetectionSet:
    if limit is None or limit >= len(data.samples):
        return data
    if limit < 1:
        raise VitsslError(f"--max-train and --max-val must be at least 1, got {limit}")
    keep = sorted(np.random.default_rng(0).permutation(len(data.samples))[:limit].tolist())
    return DetectionSet([data.samples[i] for i in keep], data.class_names, data.source, data.native_size)


def load_detection(
    spec: str, cache_dir: str, max_train: int | None = None, max_val: int | None = None
) -> tuple[DetectionSet, DetectionSet]:
    """Training and validation sets of ``spec`` (see the module docstring), capped and checked.

    Raises:
        VitsslError: Unknown name, missing folder or annotations, or no object left to train on.
    """
    train, val = _load_splits(spec, cache_dir)
    train, val = sanitize(_cap(train, max_train)), sanitize(_cap(val, max_val))
    if not train.class_names or train.num_objects == 0:
        raise VitsslError(f"{train.source}: no object to train on after the checks; check its annotations")
    if not val.samples:
        raise VitsslError(f"{val.source}: no image to evaluate on; give a validation split with images")
    return train, val


def collate(batch: list[tuple[Tensor, dict]]) -> tuple[list[Tensor], list[dict]]:
    """Detection batches are lists: images keep their own sizes (the detector resizes and pads them)."""
    return [b[0] for b in batch], [b[1] for b in batch]


def take_bad_paths(targets: list[dict]) -> list[dict]:
    """The targets without their ``"bad_paths"`` (a blank stand-in's), which are reported with :func:`note`; call
    it in the main process on every batch before the targets reach a detector or a metric."""
    for target in targets:
        note(target.pop("bad_paths", ()))
    return targets


class DetectionImages(Dataset):
    """(image (3, H, W) float in [0, 1], target {"boxes", "labels"}) pairs; with ``flip``, a horizontal flip
    with probability 1/2 drawn from (seed, epoch, index), so runs repeat exactly."""

    def __init__(self, data: DetectionSet, flip: bool = False, seed: int = 0) -> None:
        self.data, self.flip, self.seed, self.epoch = data, flip, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.data.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, dict]:
        sample = self.data.samples[index]
        bad: tuple[str, ...] = ()
        boxes, labels = torch.from_numpy(sample.boxes.copy()), torch.from_numpy(sample.labels.copy())
        try:
            pixels = np.asarray(load_rgb(sample.path), dtype=np.float32) / 255.0
            image = torch.from_numpy(pixels).permute(2, 0, 1).contiguous()
        except UnreadableImageError:  # a file that broke after the checks: a blank negative, not a crash
            w, h = sample.size or (32, 32)
            image, boxes, labels = torch.zeros(3, h, w), torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)
            bad = (entry(sample.path, file_reason(sample.path)),)
        if self.flip:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 10_007 + index)
            if torch.rand(1, generator=generator).item() < 0.5:
                image = image.flip(-1)
                boxes = torch.stack(
                    [image.shape[-1] - boxes[:, 2], boxes[:, 1], image.shape[-1] - boxes[:, 0], boxes[:, 3]], 1
                )
        target: dict = {"boxes": boxes.reshape(-1, 4), "labels": labels}
        if bad:
            target["bad_paths"] = bad
        return image, target
