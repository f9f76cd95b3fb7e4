"""The in-memory form of a detection dataset: images on disk with boxes and labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["DetectionSample", "DetectionSet"]


@dataclass
class DetectionSample:
    """One image and its objects.

    Attributes:
        path: The image file.
        boxes: (N, 4) float32 boxes (x1, y1, x2, y2) in pixels of the original image.
        labels: (N,) int64 labels, 1..C (0 is reserved for background).
        size: (width, height) when the annotation states it, else None (read from the file when needed).
    """

    path: Path
    boxes: np.ndarray
    labels: np.ndarray
    size: tuple[int, int] | None = None


@dataclass
class DetectionSet:
    """Samples, the class names (label k is ``class_names[k - 1]``), where they came from, and what was fixed.

    Attributes:
        native_size: The side of the images when they all share one (the built-in synthetic set), else None.
        fixes: Counts of what :func:`vitssl.detection.dataset.sanitize` clipped or dropped, by kind.
    """

    samples: list[DetectionSample]
    class_names: list[str]
    source: str
    native_size: int | None = None
    fixes: dict[str, int] = field(default_factory=dict)

    @property
    def num_objects(self) -> int:
        return int(sum(len(s.labels) for s in self.samples))
